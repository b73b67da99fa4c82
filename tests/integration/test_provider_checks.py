"""`Provider.check` against the fake vendors: what works is described, what fails is raised.

Whatever a check raises must be as free of secrets as a failed send: the CLI prints it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from notifyd.channel_settings import EmailSettings, SmsSettings, TelegramSettings
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.providers.base import NOTHING_TO_CHECK
from notifyd.providers.email import EmailProvider
from notifyd.providers.sms import StubSmsProvider
from notifyd.providers.telegram import TelegramProvider
from notifyd.providers.twilio import TwilioSmsProvider
from tests.fakes.leaks import error_texts
from tests.fakes.smtp import FakeSmtpServer, unused_port
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi

SMTP_USER = "mailer@example.com"
SMTP_PASSWORD = "smtp-PASSWORD-c4v5b6"
BOT_TOKEN = "555:bot-TOKEN-h7j8k9"


def _email(server: FakeSmtpServer | None, **overrides: Any) -> EmailProvider:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": unused_port(), "timeout": 2}
    if server is not None:
        values.update(host=server.host, port=server.port)
    values.update(overrides)
    return EmailProvider(EmailSettings(**values))


def _telegram(
    api: FakeTelegramApi | str, token: str = BOT_TOKEN, **overrides: Any
) -> TelegramProvider:
    url = api if isinstance(api, str) else api.url
    return TelegramProvider(
        TelegramSettings(api_url=url, bot_token=token, **{"timeout": 2, **overrides})
    )


def _twilio(api: FakeTwilioApi | str, **overrides: Any) -> TwilioSmsProvider:
    url = api if isinstance(api, str) else api.url
    values: dict[str, Any] = {
        "provider": "twilio",
        "api_url": url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15005550006",
        "timeout": 2,
    }
    values.update(overrides)
    return TwilioSmsProvider(SmsSettings(**values))


@pytest.fixture
async def auth_server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer(username=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeTelegramApi]:
    async with FakeTelegramApi(token=BOT_TOKEN) as api:
        yield api


# E-mail


async def test_email_check_logs_in_and_sends_nothing(auth_server: FakeSmtpServer) -> None:
    provider = _email(auth_server, username=SMTP_USER, password=SMTP_PASSWORD)

    detail = await provider.check()

    assert detail == (
        f"connected to 127.0.0.1:{auth_server.port} (no TLS), logged in as {SMTP_USER}"
    )
    assert auth_server.logins == [SMTP_USER]
    assert auth_server.received == []


async def test_email_check_without_a_username_only_connects(smtp_server: FakeSmtpServer) -> None:
    detail = await _email(smtp_server).check()

    assert detail.endswith("no username set, so no login tried")
    assert smtp_server.connection_count == 1


async def test_email_check_with_a_wrong_password_fails_without_quoting_it(
    auth_server: FakeSmtpServer,
) -> None:
    provider = _email(auth_server, username=SMTP_USER, password="wrong-PASSWORD-z9")

    with pytest.raises(PermanentProviderError, match="authentication failed") as info:
        await provider.check()

    assert "wrong-PASSWORD-z9" not in error_texts(info.value)
    assert auth_server.failed_logins >= 1  # one per mechanism aiosmtplib tries
    assert auth_server.logins == []


async def test_email_check_of_a_server_that_is_down_is_transient() -> None:
    with pytest.raises(TransientProviderError, match="connection failed"):
        await _email(None, username=SMTP_USER, password=SMTP_PASSWORD).check()


async def test_email_check_gives_up_after_the_channel_timeout() -> None:
    # Accepts the connection and never greets.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransientProviderError, match="timeout"):
            await _email(None, port=port, timeout=0.5).check()
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        server.close()
        await server.wait_closed()


async def test_email_without_a_host_names_the_missing_setting() -> None:
    provider = _email(None, host="")

    assert provider.missing_setting == "channels.email.host"
    assert _email(None).missing_setting is None


# Telegram


async def test_telegram_check_calls_getme_and_names_the_bot(bot_api: FakeTelegramApi) -> None:
    provider = _telegram(bot_api)
    try:
        detail = await provider.check()
    finally:
        await provider.close()

    assert detail == "getMe answered: the bot is @notifyd_test_bot"
    assert [call.method for call in bot_api.calls] == ["getMe"]
    assert bot_api.sent == []
    assert "555" not in detail  # the bot's id is the first half of its token


async def test_telegram_check_with_a_wrong_token_points_at_the_setting(
    bot_api: FakeTelegramApi,
) -> None:
    provider = _telegram(bot_api, token="555:wrong-TOKEN-q1")
    try:
        with pytest.raises(PermanentProviderError, match="bot_token") as info:
            await provider.check()
    finally:
        await provider.close()

    assert "Unauthorized" in info.value.message
    texts = error_texts(info.value)
    assert "wrong-TOKEN-q1" not in texts
    assert BOT_TOKEN not in texts


async def test_telegram_check_of_a_failing_api_is_transient(bot_api: FakeTelegramApi) -> None:
    bot_api.fail_next(status=502)
    provider = _telegram(bot_api)
    try:
        with pytest.raises(TransientProviderError, match="Bad Gateway"):
            await provider.check()
    finally:
        await provider.close()


@pytest.mark.parametrize("failure", ["down", "slow"])
async def test_telegram_check_unreachable_never_quotes_the_token(
    bot_api: FakeTelegramApi, failure: str
) -> None:
    if failure == "down":
        await bot_api.stop()
    else:
        bot_api.delay = 5
    provider = _telegram(bot_api, timeout=0.5)
    try:
        with pytest.raises(TransientProviderError, match="unreachable") as info:
            await provider.check()
    finally:
        await provider.close()

    assert BOT_TOKEN.split(":")[1] not in error_texts(info.value)


async def test_telegram_without_a_token_names_the_missing_setting() -> None:
    provider = _telegram("http://127.0.0.1:1", token="")

    assert provider.missing_setting == "channels.telegram.bot_token"
    with pytest.raises(PermanentProviderError, match="not configured"):
        await provider.check()


# Twilio


async def test_twilio_check_reads_the_account_and_sends_nothing(twilio_api: FakeTwilioApi) -> None:
    provider = _twilio(twilio_api)
    try:
        detail = await provider.check()
    finally:
        await provider.close()

    assert detail == "account 'notifyd test account' is active (Full)"
    (request,) = twilio_api.requests
    assert (request.method, request.path) == ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}.json")
    assert (request.username, request.password) == (ACCOUNT_SID, AUTH_TOKEN)
    assert twilio_api.messages == []
    # The account resource carries the auth token; the description must not.
    assert AUTH_TOKEN not in detail


async def test_twilio_check_with_a_wrong_token_fails_without_quoting_either(
    twilio_api: FakeTwilioApi,
) -> None:
    wrong = "0badc0de" * 4
    provider = _twilio(twilio_api, auth_token=wrong)
    try:
        with pytest.raises(PermanentProviderError, match="auth_token") as info:
            await provider.check()
    finally:
        await provider.close()

    texts = error_texts(info.value)
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{wrong}".encode()).decode()
    for secret in (wrong, AUTH_TOKEN, credentials):
        assert secret not in texts


async def test_twilio_check_of_a_suspended_account_fails(twilio_api: FakeTwilioApi) -> None:
    twilio_api.account_status = "suspended"
    provider = _twilio(twilio_api)
    try:
        with pytest.raises(PermanentProviderError, match="is suspended"):
            await provider.check()
    finally:
        await provider.close()


async def test_twilio_check_of_a_failing_or_missing_api_is_transient(
    twilio_api: FakeTwilioApi,
) -> None:
    twilio_api.fail_next(status=503)
    provider = _twilio(twilio_api)
    try:
        with pytest.raises(TransientProviderError, match="20503"):
            await provider.check()
    finally:
        await provider.close()
    gone = _twilio(f"http://127.0.0.1:{unused_port()}")
    try:
        with pytest.raises(TransientProviderError, match="unreachable") as info:
            await gone.check()
    finally:
        await gone.close()
    assert AUTH_TOKEN not in error_texts(info.value)


# The stub


async def test_the_sms_stub_has_nothing_to_check() -> None:
    provider = StubSmsProvider(SmsSettings())

    assert provider.missing_setting is None
    assert await provider.check() == NOTHING_TO_CHECK
