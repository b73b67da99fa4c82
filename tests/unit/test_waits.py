"""wait_for_event: the deadline, the event, and a cancellation that must not be lost."""

from __future__ import annotations

import asyncio

import pytest

from notifyd.waits import wait_for_event


async def test_returns_false_when_the_deadline_passes() -> None:
    assert await wait_for_event(asyncio.Event(), 0.01) is False


async def test_returns_true_when_the_event_is_set() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_for_event(event, 10) is True


async def test_a_cancellation_in_the_same_turn_as_the_event_is_kept() -> None:
    # asyncio.wait_for on Python 3.11 returns normally here, and the task never stops.
    event = asyncio.Event()

    async def waiter() -> None:
        while True:
            await wait_for_event(event, 10)
            event.clear()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # let it start waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
