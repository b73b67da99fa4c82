"""A delivery pipeline in memory: the real dispatcher, in-flight, actors and recorder over
the in-memory queue, with scripted providers. No I/O."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from notifyd.delivery.actors import ActorContext, ChannelActors
from notifyd.delivery.dispatcher import Dispatcher
from notifyd.delivery.inflight import Inbox, InFlight
from notifyd.delivery.pacing import Pacer, fixed_interval
from notifyd.delivery.recorder import Recorder
from notifyd.delivery.retry import RetryPolicy
from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.metrics import Metrics
from notifyd.providers import Provider
from tests.fakes.memory_queue import MemoryQueue

# What a scripted provider does for one call: succeed, raise, or wait for the event first.
Step = str | Exception | asyncio.Event


class ScriptedProvider(Provider):
    """Answers each call by the next step of its script (`"ok"` when the script runs out).

    `"transient"` and `"permanent"` raise the matching provider errors; an `asyncio.Event`
    makes the call wait until it is set, then succeed.
    """

    def __init__(self, channel: Channel, script: Iterable[Step] = ()) -> None:
        self.channel = channel
        self.script = list(script)
        self.sent: list[int] = []
        self.calls = 0
        self.running = 0
        self.most_at_once = 0

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            step = self.script.pop(0) if self.script else "ok"
            if isinstance(step, asyncio.Event):
                await step.wait()
                step = "ok"
            if step == "transient":
                raise TransientProviderError("try again")
            if step == "permanent":
                raise PermanentProviderError("never")
            if isinstance(step, Exception):
                raise step
            self.sent.append(message.notification_id)
            return {"provider": "scripted"}
        finally:
            self.running -= 1


class Pipeline:
    """The pipeline's parts wired as the service wires them, started and stopped by hand."""

    def __init__(
        self,
        providers: dict[Channel, ScriptedProvider],
        *,
        concurrency: int = 2,
        actors: int = 4,
        capacity: int = 100,
        max_attempts: int = 3,
        lease_seconds: float = 30.0,
        stall_after: float = 0.2,
        lease_margin: float = 1.0,
        max_throttle_wait: float = 600.0,
        rate_limits: dict[Channel, float] | None = None,
        intervals: dict[Channel, float] | None = None,
        horizon: float = 10.0,
        backoff: float = 0.0,
        claimers: int = 1,
    ) -> None:
        self.queue = MemoryQueue()
        self.owner = uuid.uuid4()
        self.providers = providers
        self.wakes = 0
        self.in_flight = InFlight(
            capacity,
            refill_threshold=1,
            on_room=self._wake,
            inboxes={channel: Inbox() for channel in providers},
        )
        self.recorder = Recorder(
            self.queue, self.owner, give_up_after=lease_seconds, stall_after=stall_after
        )
        self.metrics = Metrics()
        context = ActorContext(
            recorder=self.recorder,
            policy=RetryPolicy(max_attempts, backoff_initial=backoff, backoff_max=backoff),
            in_flight=self.in_flight,
            metrics=self.metrics,
            store=self.queue,
            owner=self.owner,
            lease_margin=lease_margin,
            max_throttle_wait=max_throttle_wait,
        )
        self.actors = {
            channel: ChannelActors(
                channel,
                provider,
                context,
                Pacer(
                    channel,
                    self.queue,
                    rate_limit=(rate_limits or {}).get(channel, 0.0),
                    recipient_interval=fixed_interval((intervals or {}).get(channel, 0.0)),
                    horizon=horizon,
                ),
                concurrency=concurrency,
                actors=actors,
                timeout=5.0,
            )
            for channel, provider in providers.items()
        }
        self.dispatcher = Dispatcher(
            self.queue,
            self.owner,
            self.in_flight,
            may_claim=lambda: True,
            poll_interval=60.0,
            batch_size=50,
            claimers=claimers,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
        )
        self._tasks: list[asyncio.Task[Any]] = []

    def _wake(self) -> None:
        self.wakes += 1

    def start(self) -> None:
        factories: list[Callable[[], Any]] = [self.recorder.run, self.recorder.watch]
        for actors in self.actors.values():
            factories += [factory for _, factory in actors.task_specs()]
        self._tasks = [asyncio.create_task(factory()) for factory in factories]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def claim(self) -> None:
        await self.dispatcher.claim_available()

    def statuses(self) -> Counter[str]:
        return Counter(str(row.status) for row in self.queue.rows.values())


async def has_room(recorder: Recorder) -> bool:
    """Whether an actor may start an attempt now (`wait_for_room` returns at once)."""
    waiter = asyncio.create_task(recorder.wait_for_room())
    await asyncio.sleep(0)  # one loop turn: a set event lets the waiter finish
    done = waiter.done()
    waiter.cancel()
    return done
