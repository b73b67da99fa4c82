"""Timing for the pipeline's tasks: attempt deadlines, and waiting on an event with a limit."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; return whether it is set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives in the
    same loop turn as the event, and the task then never stops (a daemon that hangs at
    shutdown). `asyncio.timeout` keeps the cancellation.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


class Deadlines:
    """Cancels the attempts of a channel that run past `timeout` seconds.

    `asyncio.timeout()` costs a timer handle and a context object per attempt, a tenth of
    the daemon's CPU at thousands of attempts per second. Here an attempt costs two dict
    operations, and a check every `resolution` seconds cancels the overdue ones: an attempt
    is cut after between `timeout` and `timeout + resolution` seconds.
    """

    def __init__(self, timeout: float, resolution: float | None = None) -> None:
        self.timeout = timeout
        self.resolution = resolution if resolution is not None else min(timeout / 10, 0.5)
        self._running: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()

    def arm(self, task: asyncio.Task[object]) -> None:
        """`task` starts an attempt now."""
        self._running[task] = asyncio.get_running_loop().time() + self.timeout

    def disarm(self, task: asyncio.Task[object]) -> bool:
        """`task` ended its attempt; True if it was cancelled for running out of time.

        The cancellation is then taken back, so the task goes on with its next attempt.
        """
        self._running.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.resolution)
            now = loop.time()
            overdue = [task for task, deadline in self._running.items() if deadline <= now]
            for task in overdue:
                del self._running[task]
                self._expired.add(task)
                task.cancel("attempt deadline")
