"""A fake Telegram Bot API: a real aiohttp server on 127.0.0.1 answering like the vendor."""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.vendor import FakeVendorApi, ForcedAnswer

MAX_TEXT_LENGTH = 4096

BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "notifyd-test",
    "username": "notifyd_test_bot",
}
_STATUS_DESCRIPTIONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class FloodControl:
    """The Bot API's limits, as the fake enforces them when `limits` is set.

    A sliding window per bot (`per_second` messages in any second), an interval per private
    chat (`chat_interval` seconds), and a sliding window per group or channel (a negative
    chat id: `group_per_minute` in any minute). Beyond them sendMessage answers 429 with
    `parameters.retry_after`, the whole seconds until the limit allows it again (at least
    1), as Telegram does. `tolerance` forgives that much jitter on every limit, as the real
    one does too (it is not exact to the millisecond).
    """

    per_second: int = 30
    chat_interval: float = 1.0
    group_per_minute: int = 20
    tolerance: float = 0.05
    _bot: deque[float] = field(default_factory=deque)
    _chats: dict[int, deque[float]] = field(default_factory=dict)

    def refusal(self, chat_id: int, now: float) -> tuple[str, float] | None:
        """("bot" | "chat" | "group", seconds to wait) when a message now is over a limit."""
        window = 1.0 - self.tolerance
        while self._bot and self._bot[0] <= now - window:
            self._bot.popleft()
        if len(self._bot) >= self.per_second:
            return "bot", self._bot[0] + window - now
        sent = self._chats.get(chat_id)
        if sent:
            if chat_id < 0:
                group_window = 60.0 - self.tolerance
                while sent and sent[0] <= now - group_window:
                    sent.popleft()
                if len(sent) >= self.group_per_minute:
                    return "group", sent[0] + group_window - now
            elif now - sent[-1] < self.chat_interval - self.tolerance:
                return "chat", sent[-1] + self.chat_interval - self.tolerance - now
        return None

    def accepted(self, chat_id: int, now: float) -> None:
        self._bot.append(now)
        sent = self._chats.setdefault(chat_id, deque())
        sent.append(now)
        if chat_id > 0:
            while len(sent) > 1:
                sent.popleft()


@dataclass(frozen=True)
class Refusal:
    """A sendMessage the fake refused with 429 because a limit was exceeded."""

    at: float  # time.monotonic()
    chat_id: int
    limit: str  # "bot", "chat" or "group"
    retry_after: int


@dataclass(frozen=True)
class ApiCall:
    """One request the fake received."""

    method: str  # Bot API method, e.g. "sendMessage"
    token: str
    chat_id: int | str | None
    text: str | None
    params: dict[str, Any]


class FakeTelegramApi(FakeVendorApi):
    """Behaves like api.telegram.org for `getMe`, `sendMessage` and `getUpdates`.

    Chats in `chats` are reachable, those in `blocked` answer 403 (blocked by the user),
    those in `deactivated` 403 (user is deactivated); any other chat id is "chat not found".
    With `limits`, sendMessage enforces the Bot API's flood control (`FloodControl`) and
    counts what it refused in `refused`. Scripted answers (`fail_next`, `rate_limit_next`,
    `force`) are used first, in order, one per request, and `delay` makes every request hang
    that long before answering (set it to more than the client's timeout to test timeouts).
    """

    def __init__(
        self,
        token: str = "123456:TEST-token-abcdefghijklmnopqrstuv",  # noqa: S107  (fake token)
        *,
        chats: set[int] | None = None,
        blocked: set[int] | None = None,
        limits: FloodControl | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.chats: set[int] = set(chats or ())
        self.blocked: set[int] = set(blocked or ())
        self.calls: list[ApiCall] = []  # every request with a well-formed path
        self.sent: list[ApiCall] = []  # the sendMessage calls that succeeded
        self.sent_at: list[float] = []  # when each of `sent` was accepted (monotonic)
        # Flood control (None: no limits), and the requests it refused.
        self.limits = limits
        self.refused: list[Refusal] = []
        # Chats whose users deactivated their account (403 "user is deactivated").
        self.deactivated: set[int] = set()
        self._message_ids = itertools.count(1)
        # What users wrote to the bot, as getUpdates answers it.
        self.updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(725_000_001)

    def user_writes(self, chat_id: int, text: str = "/start", first_name: str = "Ivan") -> None:
        """A user writes to the bot: their chat becomes reachable and shows in getUpdates."""
        self.chats.add(chat_id)
        person = {"id": chat_id, "is_bot": False, "first_name": first_name}
        self.updates.append(
            {
                "update_id": next(self._update_ids),
                "message": {
                    "message_id": next(self._message_ids),
                    "from": {**person, "language_code": "en"},
                    "chat": {"id": chat_id, "first_name": first_name, "type": "private"},
                    "date": int(time.time()),
                    "text": text,
                },
            }
        )

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)

    def rate_limit_next(self, times: int = 1, retry_after: int = 1, *, header: bool = True) -> None:
        """The next `times` requests answer 429 with `parameters.retry_after`."""
        body = flood_body(retry_after)
        headers = {"Retry-After": str(retry_after)} if header else {}
        self.force(ForcedAnswer(429, body, headers), times)

    def fail_next(self, times: int = 1, status: int = 502) -> None:
        """The next `times` requests answer `status` with the Bot API's error envelope."""
        description = _STATUS_DESCRIPTIONS.get(status, "Internal Server Error")
        body = {"ok": False, "error_code": status, "description": description}
        self.force(ForcedAnswer(status, body), times)

    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline; clear failure)
    ) -> list[ApiCall]:
        """Wait until at least `count` messages were sent; fail after `timeout` seconds."""
        await self._wait_for(lambda: len(self.sent) >= count, timeout, f"{count} sent")
        return self.sent

    async def wait_for_calls(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline; clear failure)
    ) -> list[ApiCall]:
        """Wait until at least `count` requests arrived, whatever the answer."""
        await self._wait_for(lambda: len(self.calls) >= count, timeout, f"{count} calls")
        return self.calls

    def _progress(self) -> str:
        return f"{len(self.calls)} calls, {len(self.sent)} sent"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await _params(request)
        call = ApiCall(method, token, params.get("chat_id"), params.get("text"), params)
        await self._record(self.calls, call)
        if (scripted := await self._scripted()) is not None:
            return scripted
        if token != self.token:
            return _error(401, "Unauthorized")
        if method == "getMe":
            return web.json_response({"ok": True, "result": BOT_USER})
        if method == "sendMessage":
            return await self._send_message(call)
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": self.updates})
        return _error(404, "Not Found")

    async def _send_message(self, call: ApiCall) -> web.Response:
        chat_id = _as_int(call.chat_id)
        if chat_id is None or chat_id not in self.chats | self.blocked | self.deactivated:
            return _error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.deactivated:
            return _error(403, "Forbidden: user is deactivated")
        text = call.text if isinstance(call.text, str) else ""
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            return _error(400, "Bad Request: message is too long")
        now = time.monotonic()
        if self.limits is not None:
            refusal = self.limits.refusal(chat_id, now)
            if refusal is not None:
                limit, wait = refusal
                retry_after = max(1, math.ceil(wait))
                self.refused.append(Refusal(now, chat_id, limit, retry_after))
                return flood_answer(retry_after)
            self.limits.accepted(chat_id, now)
        result = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "date": int(time.time()),
            "text": text,
        }
        self.sent_at.append(now)
        await self._record(self.sent, call)
        return web.json_response({"ok": True, "result": result})


async def _params(request: web.Request) -> dict[str, Any]:
    """The call's parameters from the query string, a JSON body or a form body."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            params.update(body)
    elif request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        params.update({key: value for key, value in (await request.post()).items()})
    return params


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def flood_body(retry_after: int) -> dict[str, Any]:
    """What the Bot API answers beyond its flood control."""
    return {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


def flood_answer(retry_after: int) -> web.Response:
    return web.json_response(flood_body(retry_after), status=429)


def _error(status: int, description: str) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description}
    return web.json_response(body, status=status)
