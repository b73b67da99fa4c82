"""Channel actors: per channel, a pool of tasks that each own their retry loop.

An actor takes a delivery from its channel's inbox, makes one attempt, waits until the
attempt is written to the attempt log, and then decides, in its own task, what comes
next: finish the notification, try the same channel again after a backoff (a timer, so
the wait never occupies an actor), or hand it to the next channel's inbox. It starts no
new attempt while its last one is unwritten, so a database that stops answering costs at
most the attempts already under way.

The vendor sees at most `concurrency` attempts at once: an actor holds one of the
channel's vendor slots from taking a delivery until its attempt ends, and gives it up while
its attempt is written. There are more actors than slots, so the vendor is kept busy
while earlier attempts are being written, and a claimed batch is carried through the
pipeline in one go instead of `concurrency` notifications per database round trip.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from notifyd.delivery import endings
from notifyd.delivery.attempt import AttemptResult, attempt_once
from notifyd.delivery.inflight import Delivery, InFlight
from notifyd.delivery.pacing import HOLD_HORIZON, Pacer, pause_length
from notifyd.delivery.recorder import Recorder, Written
from notifyd.delivery.retry import (
    FallBack,
    RetryLater,
    RetryPolicy,
    decide,
    throttled_too_long,
)
from notifyd.delivery.slots import VendorSlots
from notifyd.delivery.store import DeliveryStore
from notifyd.delivery.timers import Deadlines
from notifyd.domain import AttemptStatus, Channel, Status
from notifyd.errors import (
    DatabaseUnavailableError,
)
from notifyd.logs import get_logger
from notifyd.metrics import ChannelMetrics, Metrics
from notifyd.providers import Provider

log = get_logger(__name__)


# A sending slot this close is waited for by the actor itself rather than on a timer.
SLOT_SLACK: Final = 0.005
# An attempt this host could not make (no descriptor free) is made again after this long
# (and up to twice it, spread at random).
LOCAL_SHORTAGE_DELAY: Final = 1.0


@dataclass(frozen=True, slots=True)
class ActorContext:
    """What every actor of this instance shares."""

    recorder: Recorder
    policy: RetryPolicy
    in_flight: InFlight
    metrics: Metrics
    store: DeliveryStore
    owner: UUID
    # No attempt starts unless the lease is known to hold this much longer: past that,
    # renewals have been failing and another instance may be delivering it already.
    lease_margin: float
    # A channel that throttles a notification for longer than this is given up on.
    max_throttle_wait: float


class ChannelActors:
    """The actor tasks of one channel, fed by its inbox (held by `InFlight`)."""

    def __init__(
        self,
        channel: Channel,
        provider: Provider,
        context: ActorContext,
        pacer: Pacer,
        *,
        concurrency: int,
        actors: int,
        timeout: float,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.pacer = pacer
        self.inbox = context.in_flight.inboxes[channel]
        self.busy = 0
        self.concurrency = concurrency
        self.actors = max(actors, concurrency)
        self._vendor_slots = VendorSlots(concurrency)
        self._context = context
        self._timeout = timeout
        self._deadlines = Deadlines(timeout)
        self._metrics: ChannelMetrics = context.metrics.channels[channel]

    def task_specs(self) -> list[tuple[str, Callable[[], Any]]]:
        """Name and coroutine factory of each actor task, for the supervisor."""
        actors = [(f"actor:{self.channel}#{n}", self.run) for n in range(1, self.actors + 1)]
        return [*actors, (f"deadlines:{self.channel}", self._deadlines.run)]

    async def run(self) -> None:
        """One actor: take a delivery, attempt, wait for the write, decide; repeat."""
        context = self._context
        in_flight = context.in_flight
        task = asyncio.current_task()
        assert task is not None
        while True:
            async with self._vendor_slots:
                # No new attempt while attempts already made cannot be written. Checked
                # with the slot held, right before the attempt: an actor that waited for
                # a slot may have waited through the start of an outage.
                await context.recorder.wait_for_room()
                delivery = await self.inbox.get()
                in_flight.taken(delivery)
                if not self._may_attempt(delivery):
                    continue
                if delivery.cancel_requested and await self._stop_cancelled(delivery):
                    continue
                suppressed = self.channel in delivery.notification.suppressed
                paused = None
                if not suppressed and not self._unhindered(delivery):
                    paused = self._paused_past_budget(delivery)
                    if paused is None and not await self._has_slot(delivery):
                        continue
                self.busy += 1
                try:
                    attempt = delivery.attempts_on_channel + 1
                    started_at = time.time()
                    started = time.perf_counter()
                    if suppressed:
                        result = AttemptResult(ok=False, error=endings.SUPPRESSED, transient=False)
                    elif paused is not None:
                        result = endings.not_tried(*paused)
                    else:
                        result = await attempt_once(
                            self.provider, delivery, self._deadlines, task, self.channel
                        )
                    elapsed = time.perf_counter() - started
                finally:
                    self.busy -= 1
            delivery.slot_at = None
            if result.local_shortage:
                # This host's shortage, not the vendor's answer: made again, not counted.
                log.warning(
                    "attempt_postponed",
                    notification_id=delivery.id,
                    channel=self.channel,
                    error=result.error,
                )
                in_flight.wait(delivery, LOCAL_SHORTAGE_DELAY * (1 + random.random()))
                continue
            if result.throttled is not None:
                told = paused is None  # else the pause is one heard before
                await self._throttled(delivery, attempt, result, started_at, elapsed, told=told)
            else:
                await self._conclude(delivery, attempt, result, started_at, elapsed)

    def _may_attempt(self, delivery: Delivery) -> bool:
        """False, having dealt with it, for a delivery that must not be attempted now."""
        in_flight = self._context.in_flight
        if in_flight.draining:
            in_flight.give_back(delivery)
            return False
        if time.monotonic() > delivery.lease_until - self._context.lease_margin:
            log.warning("lease_unconfirmed", notification_id=delivery.id, channel=self.channel)
            in_flight.forget(delivery)
            return False
        return True

    async def _stop_cancelled(self, delivery: Delivery) -> bool:
        """End a notification whose cancel was asked for, without another attempt.

        False when the database knows of no cancel (a NOTIFY anyone could have sent):
        the delivery goes on.
        """
        context = self._context
        try:
            outcome = await context.store.finish_cancelled(delivery.id, context.owner)
        except DatabaseUnavailableError as exc:
            # Its lease lapses; whoever hands it back then finds the cancel (sql/).
            log.warning("finish_failed", notification_id=delivery.id, error=str(exc))
            outcome = "not_held"
        if outcome == "not_asked":
            delivery.cancel_requested = False
            # Woken from a backoff for nothing: it waits out the rest.
            now = datetime.now(UTC)
            if delivery.due is not None and delivery.due > now:
                context.in_flight.wait(delivery, (delivery.due - now).total_seconds())
                return True
            return False
        context.in_flight.forget(delivery)
        if outcome == "cancelled":
            endings.cancelled(self._context.metrics, delivery, self.channel)
        return True

    def _unhindered(self, delivery: Delivery) -> bool:
        """True when neither a pause nor a sending slot can hold `delivery` back."""
        return delivery.slot_at is None and self.pacer.holds_nothing_back()

    def _paused_past_budget(self, delivery: Delivery) -> tuple[float, bool] | None:
        """Seconds left of a pause of the channel or the recipient (and whether it is the
        channel's) when they pass what `max_throttle_wait` leaves `delivery`: it gives up
        on the channel without asking the vendor, as the one told of the pause did, rather
        than wait in the queue until the pause ends."""
        since = delivery.throttled_since
        waited = 0.0 if since is None else time.monotonic() - since
        budget = self._context.max_throttle_wait - waited
        return self.pacer.pause_past(budget, delivery.notification.recipient)

    async def _has_slot(self, delivery: Delivery) -> bool:
        """True when the channel's pace lets the attempt go now.

        Otherwise the delivery waits for its slot on a timer (a short wait), or goes back
        to the queue until then (a long one), and False is returned.
        """
        in_flight = self._context.in_flight
        recipient = delivery.notification.recipient
        pacer = self.pacer
        pacer.note_resumed()
        paused = pacer.pause_left()
        # The whole channel pauses: no slot is taken until it ends (`pause_left`). A long
        # pause of a channel with slots is left to its slot, which the database keeps
        # (and an operator may have cleared).
        if SLOT_SLACK < paused <= HOLD_HORIZON:
            in_flight.wait(delivery, paused)
            return False
        if paused > HOLD_HORIZON and not pacer.rated:
            await self._send_back(delivery, paused)
            return False
        if delivery.slot_at is not None and (
            time.monotonic() - delivery.slot_at > pacer.late_after
            or (delivery.slot_taken < pacer.paused_at and delivery.slot_at < pacer.paused_until)
        ):
            # Too late to go without crowding the slots after it; or taken before the
            # vendor asked this instance to pause, and due within the pause.
            delivery.slot_at = None
        if delivery.slot_at is None:
            if not self.pacer.paces(recipient):
                return True
            try:
                slot = await self.pacer.reserve(recipient)
            except DatabaseUnavailableError:
                in_flight.wait(delivery, 1.0)
                return False
            if not slot.reserved:
                await self._send_back(delivery, slot.wait)
                return False
            delivery.slot_taken = time.monotonic()
            delivery.slot_at = delivery.slot_taken + slot.wait
        remaining = delivery.slot_at - time.monotonic()
        if remaining > SLOT_SLACK:
            in_flight.wait(delivery, remaining)
            return False
        return True

    async def _send_back(self, delivery: Delivery, wait: float) -> None:
        """Hand a delivery back to the queue, claimable `wait` seconds from now."""
        context = self._context
        try:
            await context.store.defer(context.owner, delivery.id, wait)
        except DatabaseUnavailableError:
            context.in_flight.wait(delivery, min(wait, 1.0))
            return
        log.info(
            "delivery_deferred",
            notification_id=delivery.id,
            channel=self.channel,
            wait_s=round(wait, 3),
        )
        context.in_flight.forget(delivery)

    async def _throttled(
        self,
        delivery: Delivery,
        attempt: int,
        result: AttemptResult,
        started_at: float,
        elapsed: float,
        *,
        told: bool = True,
    ) -> None:
        """The vendor asked to slow down: pause, and try again without counting it.

        Past `max_throttle_wait` on this channel, or when the pause asked for would end
        past it, the notification falls back instead (the pause still holds for the rest).
        """
        context = self._context
        now = time.monotonic()
        if delivery.throttled_since is None:
            delivery.throttled_since = now
        waited = now - delivery.throttled_since
        pause = pause_length(result.retry_after)
        why = throttled_too_long(waited, pause, context.max_throttle_wait)
        give_up = why is not None
        error = (result.error or "throttled") + (f" ({why})" if why else "")
        final_status = Status.FAILED if give_up and delivery.is_last_channel() else None
        self._metrics.attempt_throttled.inc()
        endings.log_attempt(
            delivery, self.channel, attempt, AttemptStatus.THROTTLED, error, elapsed
        )
        record = endings.attempt_record(
            delivery, self.channel, attempt, AttemptStatus.THROTTLED, error, result, started_at
        )
        recipient = delivery.notification.recipient
        whole = result.throttled == "channel"
        # Before the attempt is written: the other actors, which took the vendor slot this
        # one gave up, must not ask the vendor again meanwhile (this instance knows of the
        # pause as soon as this call starts; the database, a moment later).
        try:
            if told:
                await self.pacer.pause(recipient, result.retry_after, whole=whole)
        except DatabaseUnavailableError as exc:
            log.warning("pause_not_shared", channel=self.channel, error=str(exc))
        written = await context.recorder.write(record, final_status)
        if not written:
            context.in_flight.forget(delivery)
            return
        if written is Written.CANCELLED:
            context.in_flight.forget(delivery)
            endings.cancelled(self._context.metrics, delivery, self.channel)
            return
        if final_status is not None:
            context.in_flight.forget(delivery)
            endings.finished(
                self._context.metrics,
                delivery,
                self.channel,
                final_status,
                attempt,
                record.finished_at,
            )
        elif give_up:
            context.in_flight.fall_back(delivery)
        elif self.pacer.honours_pause(recipient, whole=whole):
            context.in_flight.wait(delivery, 0.0)  # its next slot is past the pause
        elif pause <= HOLD_HORIZON:
            # No slot of what was paused (no rate_limit, or no per-recipient interval):
            # the pause is waited out here, or the delivery would ask again at once.
            context.in_flight.wait(delivery, pause)
        else:
            await self._send_back(delivery, pause)

    async def _conclude(
        self,
        delivery: Delivery,
        attempt: int,
        result: AttemptResult,
        started_at: float,
        elapsed: float,
    ) -> None:
        """Have the attempt written, then finish, retry later or fall back."""
        context = self._context
        metrics = self._metrics
        (metrics.attempt_succeeded if result.ok else metrics.attempt_failed).inc()
        metrics.attempt_duration.observe(elapsed)
        if result.ok:
            decision: RetryLater | FallBack | None = None
            final_status: Status | None = Status.SENT
        else:
            decision = decide(
                context.policy,
                attempt,
                transient=bool(result.transient),
                retry_after=result.retry_after,
            )
            last = isinstance(decision, FallBack) and delivery.is_last_channel()
            final_status = Status.FAILED if last else None
        status = AttemptStatus.SUCCESS if result.ok else AttemptStatus.FAILED
        endings.log_attempt(delivery, self.channel, attempt, status, result.error, elapsed)
        record = endings.attempt_record(
            delivery, self.channel, attempt, status, result.error, result, started_at
        )
        written = await context.recorder.write(record, final_status)
        in_flight = context.in_flight
        if not written:
            # Not ours any more, or not recorded in time: whoever holds the lease next
            # resumes from the attempt log.
            in_flight.forget(delivery)
            return
        if result.unreachable is not None:
            await endings.suppress(context.store, delivery, self.channel, result.unreachable)
        if written is Written.CANCELLED:
            in_flight.forget(delivery)
            endings.cancelled(self._context.metrics, delivery, self.channel)
        elif final_status is not None:
            in_flight.forget(delivery)
            endings.finished(
                self._context.metrics,
                delivery,
                self.channel,
                final_status,
                attempt,
                record.finished_at,
            )
        elif isinstance(decision, RetryLater):
            in_flight.retry_later(delivery, decision.delay)
        else:
            in_flight.fall_back(delivery)
