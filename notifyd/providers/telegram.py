"""Telegram over the Bot API's sendMessage, with aiohttp.

The bot token is part of every request URL, and aiohttp puts the URL into its exceptions;
this module therefore never chains an aiohttp exception and scrubs the token from every
text it builds (`HttpProvider`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.logs import get_logger
from notifyd.providers.http import BODY_EXCERPT, HttpProvider, json_object
from notifyd.redaction import url_secrets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from notifyd.channel_settings import TelegramSettings

log = get_logger(__name__)

# What the Bot API answers for a revoked or wrong token, and for a malformed one.
_TOKEN_REFUSED = frozenset({401, 404})


class TelegramProvider(HttpProvider):
    """Sends each message as plain text (no parse_mode: user text is never markup)."""

    channel = Channel.TELEGRAM

    def __init__(self, settings: TelegramSettings) -> None:
        token = settings.bot_token.get_secret_value()
        super().__init__(
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            secrets=(token, *url_secrets(settings.api_url)),
        )
        self._settings = settings
        self._token = token

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Deliver one message; return Telegram's message and chat ids."""
        if not self._token:
            raise PermanentProviderError("telegram channel is not configured (no bot token)")
        chat_id = message.recipient.telegram_chat_id
        if not chat_id:
            raise PermanentProviderError("user has no telegram_chat_id")
        payload = {"chat_id": _chat_id(chat_id), "text": message.as_text()}
        status, retry_header, raw = await self._post("sendMessage", payload)
        answer = self._interpret(status, retry_header, raw)
        log.debug(
            "telegram_accepted",
            notification_id=message.notification_id,
            message_id=answer["message_id"],
        )
        return answer

    @property
    def missing_setting(self) -> str | None:
        return None if self._token else "channels.telegram.bot_token"

    async def check(self) -> str:
        """Call getMe: the Bot API is reachable and takes the token; name the bot."""
        if not self._token:
            raise PermanentProviderError("telegram channel is not configured (no bot token)")
        status, retry_header, raw = await self._post("getMe", {})
        body = json_object(raw)
        if 200 <= status < 300 and body is not None and body.get("ok") is True:
            result = body.get("result")
            username = result.get("username") if isinstance(result, dict) else None
            # Not the bot's id: it is the first half of the token.
            return f"getMe answered: the bot is @{username}" if username else "getMe answered"
        try:
            self._interpret(status, retry_header, raw)
        except PermanentProviderError as exc:
            if status not in _TOKEN_REFUSED:
                raise
            raise PermanentProviderError(
                f"{exc.message} (check channels.telegram.bot_token)", response=exc.response
            ) from None
        raise PermanentProviderError(f"Telegram answered getMe with HTTP {status}")

    async def _post(self, method: str, payload: dict[str, Any]) -> tuple[int, str | None, bytes]:
        """POST one Bot API call; return the status, the Retry-After header and the body."""
        url = f"{self._settings.api_url}/bot{quote(self._token, safe=':')}/{method}"
        try:
            async with self._ensure_session().post(url, json=payload) as response:
                return response.status, response.headers.get("Retry-After"), await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = self._unreachable("Telegram", exc)
        # aiohttp exceptions carry the URL, which holds the token. `from None` inside the
        # except block would only hide them from tracebacks and keep them reachable as
        # __context__; raised out here, the error has no context at all.
        raise error from None

    def _interpret(self, status: int, retry_header: str | None, raw: bytes) -> dict[str, Any]:
        """Turn the HTTP answer into a result, or raise the matching provider error."""
        body = json_object(raw)
        if body is None:
            text = self._scrub(raw[:BODY_EXCERPT].decode("utf-8", errors="replace"))
            response = {"http_status": status, "body": text}
            error = f"Telegram answered HTTP {status} without JSON"
            if status >= 500 or status == 429:
                raise TransientProviderError(
                    error, response=response, retry_after=_seconds(retry_header)
                )
            raise PermanentProviderError(error, response=response)
        if 200 <= status < 300 and body.get("ok") is True:
            result = body.get("result")
            result = result if isinstance(result, dict) else {}
            chat = result.get("chat")
            chat = chat if isinstance(chat, dict) else {}
            return {"ok": True, "message_id": result.get("message_id"), "chat_id": chat.get("id")}
        response = self._redact(body)
        description = str(response.get("description") or f"HTTP {status}")
        if status == 429 or status >= 500:
            retry_after = _retry_after(body) or _seconds(retry_header)
            if status == 429:
                log.warning("telegram_rate_limited", retry_after=retry_after)
            raise TransientProviderError(
                f"Telegram: {description}", response=response, retry_after=retry_after
            )
        raise PermanentProviderError(f"Telegram: {description}", response=response)


def _chat_id(chat_id: str) -> int | str:
    """Numeric ids as integers, `@channelname` as is (the Bot API takes both)."""
    try:
        return int(chat_id)
    except ValueError:
        return chat_id


def _retry_after(body: Mapping[str, Any]) -> float | None:
    parameters = body.get("parameters")
    if isinstance(parameters, dict):
        value = parameters.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def _seconds(header: str | None) -> float | None:
    """A Retry-After header given in seconds; the HTTP-date form is ignored."""
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
