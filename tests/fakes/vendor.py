"""What the fake HTTP vendors (Telegram, Twilio) share: a real aiohttp server on 127.0.0.1
that can be stopped and started on the same port, scripted answers, and hangs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True)
class ForcedAnswer:
    """An answer the fake gives instead of the normal one."""

    status: int
    body: dict[str, Any] | str  # a str is sent as is (text/html), like a broken proxy
    headers: dict[str, str] = field(default_factory=dict)


class FakeVendorApi:
    """The server side of a fake vendor; subclasses add the routes and the answers.

    Scripted answers (`force`) are used first, in order, one per request, and `delay`
    makes every request hang that long before answering (set it to more than the client's
    timeout to test timeouts).
    """

    def __init__(self) -> None:
        self.delay: float = 0.0
        self.port = 0
        self._forced: deque[ForcedAnswer] = deque()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        """Base URL to use as the vendor's API URL, e.g. `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _progress(self) -> str:
        """What arrived so far, for the message of a wait that timed out."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port (the same one again after a `stop`)."""
        app = web.Application()
        self._add_routes(app)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            # Request lines and headers hold the credentials; a fake must not log them either.
            access_log=None,
            # A client that gives up cancels its request, so nothing is recorded late.
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening ("down"); hanging requests are released and dropped."""
        runner, self._runner = self._runner, None
        self._stopping.set()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def force(self, answer: ForcedAnswer, times: int = 1) -> None:
        """Answer the next `times` requests with `answer`."""
        self._forced.extend([answer] * times)

    async def _scripted(self) -> web.Response | None:
        """The hang and the forced answer due to this request, if any.

        The hang is the fault itself, not a test wait; `stop` cuts it short.
        """
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
            if self._stopping.is_set():
                raise web.HTTPServiceUnavailable
        if self._forced:
            return forced_response(self._forced.popleft())
        return None

    async def _record(self, into: list[Any], item: Any) -> None:
        async with self._changed:
            into.append(item)
            self._changed.notify_all()

    async def _wait_for(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), seconds)
            except TimeoutError:
                raise AssertionError(
                    f"expected {what} within {seconds}s: {self._progress()}"
                ) from None


def forced_response(forced: ForcedAnswer) -> web.Response:
    if isinstance(forced.body, str):
        return web.Response(
            status=forced.status, text=forced.body, content_type="text/html", headers=forced.headers
        )
    return web.json_response(forced.body, status=forced.status, headers=forced.headers)
