"""The vendor slots of a channel: how many attempts its vendor sees at once."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class VendorSlots:
    """A first-come, first-served semaphore, handed straight from one holder to the next.

    Not `asyncio.Semaphore`: up to Python 3.12 its every acquire walks the whole list of
    waiters, and a channel has many more actors waiting for a slot than slots (an actor
    gives its slot up while its attempt is written). Here acquiring and releasing cost the
    same however many wait.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot had been handed over: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the longest waiting
                return
        self._free += 1
