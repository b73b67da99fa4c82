"""Timers: attempt deadlines cancel overdue attempts only; wait_for_event keeps cancellations."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from notifyd.delivery.timers import Deadlines, wait_for_event


async def attempt(deadlines: Deadlines, work: asyncio.Future[None]) -> str:
    """What an actor does: arm, await the provider, tell a timeout from a shutdown."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.arm(task)
    try:
        await work
    except asyncio.CancelledError:
        if not deadlines.disarm(task):
            raise
        return "timed out"
    finally:
        deadlines.disarm(task)
    return "done"


@pytest.fixture
async def deadlines() -> Deadlines:
    return Deadlines(timeout=0.05, resolution=0.01)


async def run_checker(deadlines: Deadlines) -> asyncio.Task[None]:
    return asyncio.create_task(deadlines.run())


async def test_an_attempt_past_its_deadline_is_cut_and_the_actor_goes_on(
    deadlines: Deadlines,
) -> None:
    checker = await run_checker(deadlines)
    loop = asyncio.get_running_loop()
    started = loop.time()
    hung: asyncio.Future[None] = loop.create_future()  # a provider that never answers
    assert await asyncio.create_task(attempt(deadlines, hung)) == "timed out"
    assert loop.time() - started >= deadlines.timeout
    checker.cancel()


async def test_the_actor_task_is_not_left_cancelling(deadlines: Deadlines) -> None:
    checker = await run_checker(deadlines)
    loop = asyncio.get_running_loop()

    async def actor() -> tuple[str, str, int]:
        first = await attempt(deadlines, loop.create_future())
        quick: asyncio.Future[None] = loop.create_future()
        loop.call_soon(quick.set_result, None)
        second = await attempt(deadlines, quick)
        task = asyncio.current_task()
        assert task is not None
        return first, second, task.cancelling()

    assert await asyncio.create_task(actor()) == ("timed out", "done", 0)
    checker.cancel()


async def test_an_attempt_within_its_deadline_is_untouched(deadlines: Deadlines) -> None:
    checker = await run_checker(deadlines)
    loop = asyncio.get_running_loop()
    work: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.01, work.set_result, None)
    assert await asyncio.create_task(attempt(deadlines, work)) == "done"
    checker.cancel()


async def test_a_shutdown_cancellation_is_not_mistaken_for_a_timeout() -> None:
    deadlines = Deadlines(timeout=60, resolution=0.01)
    checker = await run_checker(deadlines)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(attempt(deadlines, loop.create_future()))
    await asyncio.sleep(0)  # let it start and arm
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    checker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checker


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
