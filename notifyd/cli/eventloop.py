"""The event loop notifyd runs on, and the garbage collector's settings while it serves.

uvloop (libuv, from asyncpg's authors) runs the same asyncio code on a loop written in
Cython: the daemon spends less CPU per request and per attempt. It has no Windows build,
so there the standard loop runs.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows, or installed without it
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

# Allocations between two collections of the youngest generation (CPython's default: 700).
# A drain allocates a few dozen objects per notification, nearly all freed by reference
# counting: at the default, the collector ran every few dozen notifications.
YOUNG_COLLECTION_THRESHOLD: Final = 10_000


def loop_name() -> str:
    """The name of the loop `run` uses, for the start-up log."""
    return "asyncio" if uvloop is None else "uvloop"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    return None if uvloop is None else uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is available."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Keep the garbage collector off what start-up built, and collect less often.

    What start-up built (modules, settings, the app) lives as long as the process; frozen,
    it is left out of every later collection. Otherwise each full collection walked all of
    it: 30 ms pauses in the middle of a drain, with every notification waiting.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)
