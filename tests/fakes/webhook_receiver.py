"""A status webhook receiver: a real aiohttp server that verifies every request with the
Standard Webhooks library (`standardwebhooks`), as a user of notifyd would.

`mode` may be switched at any time: "ok" (204), "unavailable" (503), "hang" (never answers
until the mode changes or the client gives up), "redirect" (307 to another URL).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

Mode = Literal["ok", "unavailable", "hang", "redirect"]
SECRET = "whsec_" + base64.b64encode(b"notifyd-test-webhook-secret-123").decode()


@dataclass(frozen=True)
class Received:
    """One verified request."""

    webhook_id: str
    body: dict[str, Any]
    answered: int


class WebhookReceiver:
    def __init__(self, secret: str = SECRET, *, path: str = "/hooks/notifyd") -> None:
        self.secret = secret
        self.path = path
        self.mode: Mode = "ok"
        self.received: list[Received] = []
        # The webhook-id of every verified request as it arrived, answered or not.
        self.arrived: list[str] = []
        # Requests whose signature did not verify (there must be none).
        self.forged = 0
        self.requests = 0
        self.running = 0
        self.most_at_once = 0
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self._changed.set()
        self._changed = asyncio.Event()

    async def set_mode_when_idle(self, mode: Mode, *, deadline: float = 30) -> None:
        """Switch once no request is held. A held request answered at the moment its
        client gives up is heard by the receiver and not by the client, which rightly
        sends it again: leaving "hang" while a request is held makes the count of
        deliveries depend on that race."""
        async with asyncio.timeout(deadline):
            while self.running:
                await self._idle.wait()
                self._idle = asyncio.Event()
        self.set_mode(mode)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        app.router.add_post("/elsewhere", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{self.path}"

    async def stop(self) -> None:
        self.set_mode("ok")
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def endpoint(self, **extra: Any) -> dict[str, Any]:
        """This receiver as a `[[webhooks.endpoints]]` entry."""
        return {"url": self.url, "secret": self.secret, **extra}

    def delivered(self) -> Counter[str]:
        """How many times each webhook-id was answered 2xx."""
        return Counter(r.webhook_id for r in self.received if 200 <= r.answered < 300)

    def bodies(self) -> dict[str, dict[str, Any]]:
        """The body of each webhook-id answered 2xx."""
        return {r.webhook_id: r.body for r in self.received if 200 <= r.answered < 300}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            raw = await request.read()
            try:
                Webhook(self.secret).verify(raw, dict(request.headers))
            except WebhookVerificationError:
                self.forged += 1
                return web.Response(status=400)
            self.arrived.append(request.headers["webhook-id"])
            while self.mode == "hang" and not _gone(request):
                # Woken by a change of mode, or to see whether the client gave up (aiohttp
                # does not cancel a handler whose client left).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
            if _gone(request):
                return web.Response(status=499)  # the client gave up: nobody hears this
            answered = {"ok": 204, "unavailable": 503, "redirect": 307}[self.mode]
            self.received.append(Received(request.headers["webhook-id"], json.loads(raw), answered))
            if answered == 307:
                return web.Response(status=307, headers={"Location": "/elsewhere"})
            return web.Response(status=answered)
        finally:
            self.running -= 1
            if not self.running:
                self._idle.set()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
