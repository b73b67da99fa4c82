"""TelegramProvider against FakeTelegramApi, a real local HTTP server."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from notifyd.channel_settings import TelegramSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import PermanentProviderError, ProviderError, TransientProviderError
from notifyd.providers.telegram import TelegramProvider
from tests.fakes.leaks import error_texts
from tests.fakes.smtp import unused_port
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.vendor import ForcedAnswer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "987654321:AAH-secret-token-Zx9yW8vU7tS6rQ5pO4n"
CHAT = 1001
BLOCKED = 4003
SUBJECT = "Заказ №42"
BODY = "Ваш заказ <b>подтверждён</b> & *отправлен*"


def _message(chat_id: str | None = str(CHAT), body: str = BODY) -> OutgoingMessage:
    recipient = Recipient(user_id=7, email=None, phone=None, telegram_chat_id=chat_id)
    return OutgoingMessage(notification_id=42, recipient=recipient, subject=SUBJECT, body=body)


def _settings(api_url: str, **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {"bot_token": SecretStr(TOKEN), "api_url": api_url, "timeout": 5.0}
    values.update(overrides)
    return TelegramSettings(**values)


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramApi]:
    async with FakeTelegramApi(TOKEN, chats={CHAT}, blocked={BLOCKED}) as fake:
        yield fake


@pytest.fixture
async def provider(api: FakeTelegramApi) -> AsyncIterator[TelegramProvider]:
    provider = TelegramProvider(_settings(api.url))
    await provider.start()
    yield provider
    await provider.close()


async def _failure(provider: TelegramProvider, message: OutgoingMessage) -> ProviderError:
    """Send, expecting a provider error; check the token is nowhere in it."""
    with capture_logs() as logs, pytest.raises(ProviderError) as caught:
        await provider.send(message)
    assert TOKEN not in error_texts(caught.value)
    assert TOKEN not in repr(logs)
    return caught.value


async def test_sends_plain_text_and_returns_the_ids(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    with capture_logs() as logs:
        answer = await provider.send(_message())

    [call] = await api.wait_for_messages(1)
    assert answer == {"ok": True, "message_id": 1, "chat_id": CHAT}
    assert call.text == f"{SUBJECT}\n\n{BODY}"
    assert call.chat_id == CHAT
    assert call.token == TOKEN
    assert "parse_mode" not in call.params  # user text is never interpreted as markup
    assert TOKEN not in repr(logs)


async def test_message_ids_come_from_telegram(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    first = await provider.send(_message())
    second = await provider.send(_message())

    assert (first["message_id"], second["message_id"]) == (1, 2)
    assert len(await api.wait_for_messages(2)) == 2


async def test_works_without_start_and_after_close(api: FakeTelegramApi) -> None:
    provider = TelegramProvider(_settings(api.url))
    try:
        await provider.send(_message())
        await provider.close()
        await provider.send(_message())
    finally:
        await provider.close()

    assert len(await api.wait_for_messages(2)) == 2


async def test_chat_not_found_is_permanent(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    error = await _failure(provider, _message(chat_id="5555"))

    assert isinstance(error, PermanentProviderError)
    assert "Bad Request: chat not found" in str(error)
    assert error.response == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: chat not found",
    }
    assert api.sent == []


async def test_wrong_token_is_permanent(api: FakeTelegramApi) -> None:
    other = "111:wrong-token-value"
    provider = TelegramProvider(_settings(api.url, bot_token=SecretStr(other)))
    try:
        with pytest.raises(PermanentProviderError) as caught:
            await provider.send(_message())
    finally:
        await provider.close()

    assert caught.value.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert other not in error_texts(caught.value)
    assert api.calls[0].token == other


async def test_blocked_by_the_user_is_permanent(provider: TelegramProvider) -> None:
    error = await _failure(provider, _message(chat_id=str(BLOCKED)))

    assert isinstance(error, PermanentProviderError)
    assert "Forbidden: bot was blocked by the user" in str(error)
    assert error.response is not None
    assert error.response["error_code"] == 403


async def test_too_long_text_is_permanent(provider: TelegramProvider) -> None:
    error = await _failure(provider, _message(body="x" * 5000))

    assert isinstance(error, PermanentProviderError)
    assert "message is too long" in str(error)


async def test_rate_limit_is_transient_with_retry_after_from_the_body(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    api.rate_limit_next(2, retry_after=1)

    for _ in range(2):
        error = await _failure(provider, _message())
        assert isinstance(error, TransientProviderError)
        assert error.retry_after == 1.0
        assert error.response is not None
        assert error.response["parameters"] == {"retry_after": 1}

    assert (await provider.send(_message()))["ok"] is True
    assert len(api.calls) == 3


async def test_rate_limit_prefers_the_body_over_the_header(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    body = {"ok": False, "error_code": 429, "parameters": {"retry_after": 7}}
    api.force(ForcedAnswer(429, body, {"Retry-After": "30"}))

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert error.retry_after == 7.0


async def test_rate_limit_with_only_a_retry_after_header(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    api.force(ForcedAnswer(429, {"ok": False, "error_code": 429}, {"Retry-After": "3"}))

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert error.retry_after == 3.0
    assert "HTTP 429" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_transient(
    api: FakeTelegramApi, provider: TelegramProvider, status: int
) -> None:
    api.fail_next(3, status=status)

    for _ in range(3):
        error = await _failure(provider, _message())
        assert isinstance(error, TransientProviderError)
        assert error.response is not None
        assert error.response["error_code"] == status
        assert error.retry_after is None

    assert (await provider.send(_message()))["ok"] is True


async def test_non_json_5xx_is_transient_with_a_truncated_body(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    page = "<html>" + "bad gateway " * 200 + "</html>"
    api.force(ForcedAnswer(502, page))

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert error.response is not None
    assert error.response["http_status"] == 502
    assert error.response["body"].startswith("<html>bad gateway")
    assert len(error.response["body"]) <= 500


async def test_non_json_4xx_is_permanent(api: FakeTelegramApi, provider: TelegramProvider) -> None:
    api.force(ForcedAnswer(404, "<html>not found</html>"))

    error = await _failure(provider, _message())

    assert isinstance(error, PermanentProviderError)
    assert error.response == {"http_status": 404, "body": "<html>not found</html>"}


async def test_token_echoed_in_an_answer_is_scrubbed(
    api: FakeTelegramApi, provider: TelegramProvider
) -> None:
    body = {"ok": False, "error_code": 400, "description": f"Bad Request: bad token {TOKEN}"}
    api.force(ForcedAnswer(400, body))

    error = await _failure(provider, _message())

    assert error.response is not None
    assert error.response["description"] == "Bad Request: bad token ***"


async def test_server_down_is_transient(api: FakeTelegramApi, provider: TelegramProvider) -> None:
    await api.stop()

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert "Telegram unreachable" in str(error)
    # aiohttp's exception carries the URL with the token: it must not be chained at all.
    assert error.__cause__ is None
    assert error.__context__ is None

    await api.start()
    assert (await provider.send(_message()))["ok"] is True


async def test_refused_port_is_transient() -> None:
    provider = TelegramProvider(_settings(f"http://127.0.0.1:{unused_port()}"))
    try:
        error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, TransientProviderError)


async def test_hang_beyond_the_timeout_is_transient(api: FakeTelegramApi) -> None:
    api.delay = 30.0
    provider = TelegramProvider(_settings(api.url, timeout=0.3))
    try:
        # Ended by the attempt's own timeout: the outer deadline is a third of the delay.
        async with asyncio.timeout(10):
            error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, TransientProviderError)
    assert "Timeout" in str(error)
    assert len(await api.wait_for_calls(1)) == 1
    assert api.sent == []


@pytest.mark.parametrize("chat_id", [None, ""])
async def test_missing_chat_id_is_permanent(
    api: FakeTelegramApi, provider: TelegramProvider, chat_id: str | None
) -> None:
    with pytest.raises(PermanentProviderError, match="user has no telegram_chat_id"):
        await provider.send(_message(chat_id=chat_id))

    assert api.calls == []


async def test_missing_token_is_permanent(api: FakeTelegramApi) -> None:
    provider = TelegramProvider(_settings(api.url, bot_token=SecretStr("")))

    with pytest.raises(PermanentProviderError, match=r"not configured \(no bot token\)"):
        await provider.send(_message())

    assert api.calls == []


async def test_string_chat_ids_reach_the_api(api: FakeTelegramApi) -> None:
    # Channel usernames are strings; numeric ids are sent as numbers.
    provider = TelegramProvider(_settings(api.url))
    try:
        error = await _failure(provider, _message(chat_id="@some_channel"))
    finally:
        await provider.close()

    assert isinstance(error, PermanentProviderError)
    assert api.calls[0].chat_id == "@some_channel"


async def test_fake_accepts_form_bodies_and_get_me(api: FakeTelegramApi) -> None:
    # Keeps the fake honest for other clients (curl, the old system's form posts).
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api.url}/bot{TOKEN}/sendMessage", data={"chat_id": str(CHAT), "text": "hi"}
        ) as response:
            sent = await response.json()
        async with session.get(f"{api.url}/bot{TOKEN}/getMe") as response:
            me = await response.json()
        async with session.post(
            f"{api.url}/bot{TOKEN}/sendMessage", json={"chat_id": CHAT}
        ) as response:
            empty = (response.status, await response.json())

    assert sent["ok"] is True
    assert sent["result"]["chat"] == {"id": CHAT, "type": "private"}
    assert me["result"]["is_bot"] is True
    assert empty == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
    )
