"""The delivery service: dispatcher, listener, lease keeper and channel actors, wired."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Final

from notifyd.channel_settings import channel_settings
from notifyd.config import DispatcherSettings, Settings
from notifyd.db.listen import Place
from notifyd.delivery.actors import ActorContext, ChannelActors
from notifyd.delivery.dispatcher import Dispatcher
from notifyd.delivery.inflight import Inbox, InFlight
from notifyd.delivery.leases import LeaseKeeper, heartbeat_interval
from notifyd.delivery.listener import POLL_ONLY, Listener
from notifyd.delivery.pacing import pacer_for
from notifyd.delivery.recorder import Recorder
from notifyd.delivery.retention import Pruner
from notifyd.delivery.retry import RetryPolicy
from notifyd.delivery.store import DeliveryStore
from notifyd.delivery.supervisor import Supervisor
from notifyd.domain import Channel
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger
from notifyd.metrics import Metrics
from notifyd.providers import Provider

log = get_logger(__name__)

# Longest wait at shutdown for the claims under way (within the grace period).
CLAIM_ROUND_GRACE: Final = 2.0


# Past this, more actors per channel only cost memory (about 1 KB each, idle): a batch
# this large already takes longer to attempt than to write.
MAX_ACTORS_PER_CHANNEL: Final = 4096


def actors_per_channel(dispatcher: DispatcherSettings) -> int:
    """How many actor tasks each channel runs.

    An actor waits for its attempt to be written before it takes the next delivery, so
    actors that wait must not leave claimed notifications idle in the inbox: there are
    enough for a claimed batch beside everything the writers may have under way, but never
    more than the instance may hold (an actor has one delivery at a time), nor more than
    `MAX_ACTORS_PER_CHANNEL`.
    """
    under_way = dispatcher.batch_size + dispatcher.writers * dispatcher.write_batch_size
    return min(dispatcher.max_in_flight, under_way, MAX_ACTORS_PER_CHANNEL)


class DeliveryService:
    """Everything that moves notifications from the table to the providers."""

    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        listen_url: str | None,
        providers: Mapping[Channel, Provider],
        metrics: Metrics,
        on_failure: Callable[[str], None],
        *,
        poll_only: str | None = None,
        place: Callable[[], Awaitable[Place]] | None = None,
    ) -> None:
        """`listen_url` is where the LISTEN session goes; None: poll-only, for `poll_only`.

        `place` tells where the pool is, which the LISTEN session must be in too.
        """
        self.owner = uuid.uuid4()
        self._settings = settings
        self._store = store
        dispatcher_settings = settings.dispatcher
        delivery = settings.delivery
        self.in_flight = InFlight(
            dispatcher_settings.max_in_flight,
            refill_threshold=dispatcher_settings.batch_size,
            on_room=self._room_for_dispatcher,
            inboxes={channel: Inbox() for channel in providers},
        )
        self.recorder = Recorder(
            store,
            self.owner,
            give_up_after=delivery.lease_seconds,
            max_batch=dispatcher_settings.write_batch_size,
            # A write unanswered for this long means the database hangs: no new attempts.
            stall_after=min(0.5, delivery.lease_seconds / 4),
        )
        context = ActorContext(
            recorder=self.recorder,
            policy=RetryPolicy(
                delivery.max_attempts,
                delivery.backoff_initial,
                delivery.backoff_max,
                delivery.max_retry_after,
            ),
            in_flight=self.in_flight,
            metrics=metrics,
            store=store,
            owner=self.owner,
            lease_margin=heartbeat_interval(delivery.lease_seconds),
            max_throttle_wait=delivery.max_throttle_wait,
        )
        self.actors = {
            channel: ChannelActors(
                channel,
                provider,
                context,
                pacer_for(channel, settings.channels, store),
                concurrency=channel_settings(settings.channels, channel).concurrency,
                actors=actors_per_channel(dispatcher_settings),
                timeout=channel_settings(settings.channels, channel).timeout,
            )
            for channel, provider in providers.items()
        }
        self.listener = Listener(
            listen_url,
            self.owner,
            self._wake_dispatcher,
            ping=store.ping,
            check_interval=dispatcher_settings.listen_check_interval,
            connect_timeout=settings.database.connect_timeout,
            backoff_max=dispatcher_settings.reconnect_backoff_max,
            pooler=settings.database.listen_pooler,
            poll_only=poll_only,
            on_cancel=lambda notification_id: self.in_flight.cancel_requested([notification_id]),
            place=place,
        )
        self.dispatcher = Dispatcher(
            store,
            self.owner,
            self.in_flight,
            may_claim=self.listener.may_claim,
            poll_interval=dispatcher_settings.poll_interval,
            batch_size=dispatcher_settings.batch_size,
            claimers=dispatcher_settings.claimers,
            lease_seconds=delivery.lease_seconds,
            max_attempts=delivery.max_attempts,
        )
        self.lease_keeper = LeaseKeeper(
            store,
            self.owner,
            self.in_flight,
            lease_seconds=delivery.lease_seconds,
            present=self.listener.working,
            peers_settled=self.listener.peers_settled,
        )
        retention = settings.retention
        self.pruner = Pruner(
            store,
            days=retention.days,
            idempotency_key_seconds=retention.idempotency_key_hours * 3600,
            interval=retention.prune_interval,
            batch_size=retention.batch_size,
            webhook_retry_for=settings.webhooks.retry_for,
        )
        self.supervisor = Supervisor(on_failure)
        self._watch(metrics)

    def _watch(self, metrics: Metrics) -> None:
        """Export the state of the pipeline, read at each scrape."""
        actors = self.actors
        metrics.watch(
            "notifyd_inbox_depth",
            "Deliveries waiting for an actor, by channel.",
            lambda: [(name, a.inbox.qsize()) for name, a in actors.items()],
            label="channel",
        )
        metrics.watch(
            "notifyd_busy_actors",
            "Actors making an attempt right now, by channel.",
            lambda: [(name, a.busy) for name, a in actors.items()],
            label="channel",
        )
        metrics.watch(
            "notifyd_in_flight",
            "Notifications this instance holds (claimed, not yet finished).",
            lambda: [("", len(self.in_flight))],
        )
        metrics.watch(
            "notifyd_unwritten_attempts",
            "Attempts made and waiting to be written.",
            lambda: [("", len(self.recorder))],
        )
        metrics.watch(
            "notifyd_listener_reconnects",
            "Times the LISTEN connection was re-established.",
            lambda: [("", self.listener.reconnects)],
            counter=True,
        )
        metrics.watch(
            "notifyd_channel_paused",
            "1 while this instance knows the channel's vendor asked it to wait.",
            lambda: [(name, float(a.pacer.paused)) for name, a in actors.items()],
            label="channel",
        )
        metrics.watch(
            "notifyd_lease_heartbeats",
            "Lease keeper rounds that reached the database (renewals and takeovers).",
            lambda: [("", self.lease_keeper.heartbeats)],
            counter=True,
        )
        metrics.watch(
            "notifyd_pruned",
            "Rows deleted by retention, by table.",
            lambda: list(self.pruner.pruned.items()),
            label="table",
            counter=True,
        )
        metrics.watch(
            "notifyd_listener_connected",
            "1 while the LISTEN connection is up and holds the presence lock.",
            lambda: [("", float(self.listener.present.is_set()))],
        )

    def readiness(self) -> dict[str, str]:
        """Each part of delivery: "ok", or why it cannot work right now."""
        listener = "ok"
        if self.listener.poll_only is not None:
            listener = f"{POLL_ONLY}: {self.listener.poll_only}"
        elif not self.listener.connected.is_set():
            listener = "not connected"
        elif not self.listener.present.is_set():
            listener = "connected, waiting for the presence lock"
        expected = sum(actors.actors for actors in self.actors.values())
        running = self.supervisor.running("actor:")
        dispatching = self.supervisor.running("dispatcher") > 0
        delivery = "ok"
        if self.in_flight.draining:
            delivery = "stopping"
        elif dispatching and not self.dispatcher.started.is_set():
            delivery = "starting (no claim made yet)"
        elif running < expected or not dispatching:
            state = "running" if dispatching else "stopped"
            delivery = f"{running} of {expected} actors running, dispatcher {state}"
        return {"listener": listener, "delivery": delivery}

    def _wake_dispatcher(self) -> None:
        self.dispatcher.wake()

    def _room_for_dispatcher(self) -> None:
        self.dispatcher.room()

    def start(self) -> None:
        for channel_actors in self.actors.values():
            for name, factory in channel_actors.task_specs():
                self.supervisor.spawn(name, factory)
        for n in range(1, self._settings.dispatcher.writers + 1):
            self.supervisor.spawn(f"recorder#{n}", self.recorder.run)
        self.supervisor.spawn("recorder-watch", self.recorder.watch)
        self.supervisor.spawn("lease-keeper", self.lease_keeper.run)
        self.supervisor.spawn("dispatcher", self.dispatcher.run)
        self.supervisor.spawn("listener", self.listener.run)
        self.supervisor.spawn("pruner", self.pruner.run)
        log.info("delivery_started", instance=str(self.owner))

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming, let running attempts finish, release everything else."""
        self.dispatcher.stop_claiming()
        # A claim under way ends first: cancelled, rows the server had already leased to
        # this instance would wait for a takeover instead of being released below.
        await self.supervisor.stop("dispatcher", grace=min(grace_seconds, CLAIM_ROUND_GRACE))
        # Backoffs and inboxes are parked at once; an actor parks what it finishes.
        self.in_flight.drain()
        try:
            async with asyncio.timeout(grace_seconds):
                await self.in_flight.wait_settled()
        except TimeoutError:
            log.warning("shutdown_grace_expired", in_flight=len(self.in_flight))
        await self.supervisor.stop("actor:")
        await self.supervisor.stop("deadlines:")
        # Attempts already made are written before anything is released.
        try:
            async with asyncio.timeout(max(grace_seconds, 1.0)):
                await self.recorder.wait_idle()
        except TimeoutError:
            log.warning("shutdown_writes_pending", pending=len(self.recorder))
        await self.supervisor.stop("recorder")
        await self.supervisor.stop("lease-keeper")
        await self.supervisor.stop("pruner")
        await self._release(self.in_flight.unfinished())
        # Last: until the release, the presence lock must keep others off these leases.
        await self.supervisor.stop("listener")

    async def _release(self, unfinished: list[tuple[int, datetime]]) -> None:
        if not unfinished:
            return
        try:
            await self._store.release(self.owner, unfinished)
        except DatabaseUnavailableError as exc:
            log.error("release_failed", error=str(exc), count=len(unfinished))
            return
        log.info("released_unfinished", count=len(unfinished))
