"""The event loop notifyd runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv, from asyncpg's authors) runs the same asyncio code on a loop written in
Cython: the daemon spends less CPU per request and per attempt. It has no Windows build,
so there the standard loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows, or installed without it
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


def loop_name() -> str:
    """The name of the loop `run` uses, for the start-up log."""
    return "asyncio" if uvloop is None else "uvloop"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    return None if uvloop is None else uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is available."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)
