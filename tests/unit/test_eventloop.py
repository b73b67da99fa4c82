"""The daemon's event loop: uvloop where it is built, with asyncio's semantics."""

from __future__ import annotations

import asyncio
import sys

import pytest

from notifyd.cli import eventloop


def test_run_returns_the_result_on_uvloop_where_it_is_built() -> None:
    async def loop_module() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    module = eventloop.run(loop_module())

    expected = "asyncio" if sys.platform == "win32" else "uvloop"
    assert eventloop.loop_name() == expected
    assert module.split(".")[0] == expected


def test_run_raises_what_the_coroutine_raises_and_closes_the_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def fail() -> None:
        loops.append(asyncio.get_running_loop())
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        eventloop.run(fail())
    assert loops[0].is_closed()


def test_task_uncancel_works_as_the_attempt_deadlines_need() -> None:
    # Deadlines cancel an overdue attempt and take the cancellation back with uncancel().
    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            return task.uncancel()
        return -1

    assert eventloop.run(main()) == 0
