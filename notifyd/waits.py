"""Waiting for an event with a deadline, without losing a cancellation."""

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
