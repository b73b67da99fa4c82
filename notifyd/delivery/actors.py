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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from notifyd.delivery.inflight import Delivery, InFlight
from notifyd.delivery.recorder import Recorder
from notifyd.delivery.retry import FallBack, RetryLater, RetryPolicy, decide
from notifyd.delivery.timers import Deadlines
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, Status
from notifyd.errors import ProviderError
from notifyd.logs import get_logger
from notifyd.metrics import ChannelMetrics, Metrics
from notifyd.providers import Provider

log = get_logger(__name__)


# Not frozen: one is made per attempt, and a frozen dataclass takes several times as long
# to build.
@dataclass(slots=True)
class AttemptResult:
    """What one attempt came to, before it is written."""

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
    # No attempt starts unless the lease is known to hold this much longer: past that,
    # renewals have been failing and another instance may be delivering it already.
    lease_margin: float


class ChannelActors:
    """The actor tasks of one channel, fed by its inbox (held by `InFlight`)."""

    def __init__(
        self,
        channel: Channel,
        provider: Provider,
        context: ActorContext,
        *,
        concurrency: int,
        actors: int,
        timeout: float,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.inbox = context.in_flight.inboxes[channel]
        self.busy = 0
        self.concurrency = concurrency
        self.actors = max(actors, concurrency)
        self._vendor_slots = asyncio.Semaphore(concurrency)
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
                self.inbox.task_done()
                in_flight.taken(delivery)
                if in_flight.draining:
                    in_flight.give_back(delivery)
                    continue
                if time.monotonic() > delivery.lease_until - context.lease_margin:
                    log.warning(
                        "lease_unconfirmed",
                        notification_id=delivery.id,
                        channel=self.channel,
                    )
                    in_flight.forget(delivery)
                    continue
                self.busy += 1
                try:
                    attempt = delivery.attempts_on_channel + 1
                    started_at = datetime.now(UTC)
                    started = time.perf_counter()
                    result = await self._attempt(delivery, task)
                    elapsed = time.perf_counter() - started
                finally:
                    self.busy -= 1
            await self._conclude(delivery, attempt, result, started_at, elapsed)

    async def _conclude(
        self,
        delivery: Delivery,
        attempt: int,
        result: AttemptResult,
        started_at: datetime,
        elapsed: float,
    ) -> None:
        """Have the attempt written, then finish, retry later or fall back."""
        context = self._context
        finished_at = datetime.now(UTC)
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
        log.info(
            "attempt_finished",
            notification_id=delivery.id,
            channel=self.channel,
            attempt=attempt,
            status=AttemptStatus.SUCCESS if result.ok else AttemptStatus.FAILED,
            error=result.error,
            duration_ms=round(elapsed * 1000, 3),
        )
        written = await context.recorder.write(
            AttemptRecord(
                notification_id=delivery.id,
                channel=self.channel,
                attempt=attempt,
                status=AttemptStatus.SUCCESS if result.ok else AttemptStatus.FAILED,
                error=result.error,
                transient=result.transient,
                provider_response=result.response,
                started_at=started_at,
                finished_at=max(finished_at, started_at),
            ),
            final_status,
        )
        in_flight = context.in_flight
        if not written:
            # Not ours any more, or not recorded in time: whoever holds the lease next
            # resumes from the attempt log.
            in_flight.forget(delivery)
        elif final_status is not None:
            in_flight.forget(delivery)
            self._finished(delivery, final_status, attempt)
        elif isinstance(decision, RetryLater):
            in_flight.retry_later(delivery, decision.delay)
        else:
            in_flight.fall_back(delivery)

    async def _attempt(self, delivery: Delivery, task: asyncio.Task[Any]) -> AttemptResult:
        self._deadlines.arm(task)
        try:
            response = await self.provider.send(delivery.message)
        except asyncio.CancelledError:
            if not self._deadlines.disarm(task):
                raise  # the daemon is stopping
            return AttemptResult(
                ok=False, error=f"timed out after {self._timeout:g}s", transient=True
            )
        except ProviderError as exc:
            return AttemptResult(
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
                notification_id=delivery.id,
                channel=self.channel,
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            )
            return AttemptResult(
                ok=False, error=f"internal error: {type(exc).__name__}", transient=True
            )
        finally:
            # A provider that swallowed the deadline's cancellation still gets it taken back.
            self._deadlines.disarm(task)
        return AttemptResult(ok=True, response=response)

    def _finished(self, delivery: Delivery, status: Status, attempt: int) -> None:
        notification = delivery.notification
        metrics = self._context.metrics
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
