"""Channel actors: per channel, a pool of tasks that own the retry loop.

An actor takes a delivery from its channel's inbox, makes one attempt, writes it to the
attempt log and then either finishes the notification, schedules the next attempt (a timer,
so a backoff wait never occupies an actor) or hands it to the next channel's inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notifyd.delivery.inflight import Delivery, InFlight
from notifyd.delivery.recorder import Recorder
from notifyd.delivery.retry import Decision, FallBack, RetryLater, RetryPolicy, decide
from notifyd.delivery.timers import Deadlines
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, Status
from notifyd.errors import ProviderError
from notifyd.logs import get_logger
from notifyd.metrics import Metrics
from notifyd.providers import Provider

log = get_logger(__name__)


# Not frozen: one is made per attempt, and a frozen dataclass takes several times as long
# to build.
@dataclass(slots=True)
class Outcome:
    """The result of one attempt, before it is written."""

    ok: bool
    error: str | None = None
    transient: bool | None = None
    response: dict[str, Any] | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class ActorContext:
    """What every actor of this instance shares."""

    recorder: Recorder
    policy: RetryPolicy
    in_flight: InFlight
    metrics: Metrics
    hand_off: Callable[[Delivery], None]


class ChannelActors:
    """The inbox and the actor tasks of one channel."""

    def __init__(
        self,
        channel: Channel,
        provider: Provider,
        context: ActorContext,
        *,
        concurrency: int,
        timeout: float,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self.busy = 0
        self._context = context
        self.concurrency = concurrency
        self._timeout = timeout
        self._deadlines = Deadlines(timeout)
        self._metrics = context.metrics.channels[channel]
        # Deliveries waiting out a backoff: notification id -> (timer, due time, delivery).
        self._scheduled: dict[int, tuple[asyncio.TimerHandle, datetime, Delivery]] = {}
        # While draining for shutdown, retries are parked here to be released, not run.
        self.draining = False
        self.parked: list[tuple[int, datetime]] = []

    def task_specs(self) -> list[tuple[str, Callable[[], Any]]]:
        """Name and coroutine factory of each actor task, for the supervisor."""
        actors = [(f"actor:{self.channel}#{n}", self.run) for n in range(1, self.concurrency + 1)]
        return [*actors, (f"deadlines:{self.channel}", self._deadlines.run)]

    async def run(self) -> None:
        recorder = self._context.recorder
        task = asyncio.current_task()
        assert task is not None
        while True:
            # No new attempt while attempts already made cannot be written.
            await recorder.wait_for_room()
            delivery = await self.inbox.get()
            self.busy += 1
            try:
                await self.deliver(delivery, task)
            finally:
                self.busy -= 1
                self.inbox.task_done()

    def schedule(self, delivery: Delivery, delay: float) -> None:
        """Put `delivery` back in the inbox after `delay` seconds, without holding an actor."""
        notification_id = delivery.notification.id
        due = datetime.now(UTC) + timedelta(seconds=delay)
        if self.draining:
            self.parked.append((notification_id, due))
            self._context.in_flight.done(notification_id)
            return
        if delay <= 0:
            self.inbox.put_nowait(delivery)  # no timer to wait out
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._wake_scheduled, notification_id)
        self._scheduled[notification_id] = (handle, due, delivery)

    def _wake_scheduled(self, notification_id: int) -> None:
        entry = self._scheduled.pop(notification_id, None)
        if entry is not None:
            self.inbox.put_nowait(entry[2])

    def take_unfinished(self) -> list[tuple[int, datetime]]:
        """Cancel backoff timers and empty the inbox; return (id, claimable-from) of each."""
        now = datetime.now(UTC)
        taken = []
        for notification_id, (handle, due, _) in self._scheduled.items():
            handle.cancel()
            taken.append((notification_id, due))
        self._scheduled.clear()
        while not self.inbox.empty():
            taken.append((self.inbox.get_nowait().notification.id, now))
            self.inbox.task_done()
        return taken

    async def deliver(self, delivery: Delivery, task: asyncio.Task[Any]) -> None:
        """Make one attempt in `task` (the calling actor's) and hand it to the recorder.

        Acts on the attempt once it is written.
        """
        notification = delivery.notification
        attempt = delivery.attempts_on_channel + 1
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        outcome = await self._attempt(delivery, task)
        elapsed = time.perf_counter() - started
        finished_at = datetime.now(UTC)
        metrics = self._metrics
        (metrics.attempt_succeeded if outcome.ok else metrics.attempt_failed).inc()
        metrics.attempt_duration.observe(elapsed)

        decision: Decision | None = None
        final_status = Status.SENT if outcome.ok else None
        if not outcome.ok:
            decision = decide(
                self._context.policy,
                attempt,
                transient=bool(outcome.transient),
                retry_after=outcome.retry_after,
            )
            if isinstance(decision, FallBack) and delivery.next_channel() is None:
                final_status = Status.FAILED

        record = AttemptRecord(
            notification_id=notification.id,
            channel=self.channel,
            attempt=attempt,
            status=AttemptStatus.SUCCESS if outcome.ok else AttemptStatus.FAILED,
            error=outcome.error,
            transient=outcome.transient,
            provider_response=outcome.response,
            started_at=started_at,
            finished_at=max(finished_at, started_at),
        )
        log.info(
            "attempt_finished",
            notification_id=notification.id,
            channel=self.channel,
            attempt=attempt,
            status=record.status,
            error=outcome.error,
            duration_ms=round(elapsed * 1000, 3),
        )
        self._context.recorder.submit(
            record,
            final_status,
            lambda owned: self._recorded(delivery, attempt, decision, final_status, owned),
        )

    def _recorded(
        self,
        delivery: Delivery,
        attempt: int,
        decision: Decision | None,
        final_status: Status | None,
        owned: bool,
    ) -> None:
        """The attempt is written (or the lease was lost): finish, retry or fall back."""
        if not owned:
            self._context.in_flight.done(delivery.notification.id)
        elif final_status is not None:
            self._finish(delivery, final_status, attempt)
        elif isinstance(decision, RetryLater):
            delivery.attempts_on_channel = attempt
            self.schedule(delivery, decision.delay)
        else:
            delivery.channel_index += 1
            delivery.attempts_on_channel = 0
            self._context.hand_off(delivery)

    async def _attempt(self, delivery: Delivery, task: asyncio.Task[Any]) -> Outcome:
        notification = delivery.notification
        message = delivery.message
        self._deadlines.arm(task)
        try:
            response = await self.provider.send(message)
        except asyncio.CancelledError:
            if not self._deadlines.disarm(task):
                raise  # the daemon is stopping
            return Outcome(ok=False, error=f"timed out after {self._timeout:g}s", transient=True)
        except ProviderError as exc:
            return Outcome(
                ok=False,
                error=exc.message,
                transient=exc.transient,
                response=exc.response,
                retry_after=exc.retry_after,
            )
        except Exception as exc:
            # A provider bug, not a vendor answer. Only the type is logged: the text of an
            # untranslated library error may carry a secret (a token in a URL).
            log.error(
                "provider_crashed",
                notification_id=notification.id,
                channel=self.channel,
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            )
            return Outcome(ok=False, error=f"internal error: {type(exc).__name__}", transient=True)
        finally:
            # A provider that swallowed the deadline's cancellation still gets it taken back.
            self._deadlines.disarm(task)
        return Outcome(ok=True, response=response)

    def _finish(self, delivery: Delivery, status: Status, attempt: int) -> None:
        notification = delivery.notification
        context = self._context
        context.in_flight.done(notification.id)
        metrics = context.metrics
        (metrics.finished_sent if status == Status.SENT else metrics.finished_failed).inc()
        metrics.latency.observe((datetime.now(UTC) - notification.created_at).total_seconds())
        if status == Status.SENT:
            log.info(
                "notification_sent",
                notification_id=notification.id,
                channel=self.channel,
                attempt=attempt,
            )
        else:
            log.warning(
                "notification_failed",
                notification_id=notification.id,
                channels=list(notification.channels),
            )
