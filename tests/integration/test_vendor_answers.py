"""How each provider reads a vendor's "slow down" and "never reachable", against the fakes.

Telegram and Twilio answer from real local HTTP servers (`tests/fakes`), SMTP from a
real aiosmtpd server; the answers have the vendors' own shapes, including the odd ones
a vendor (or something in between) may send.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from notifyd.channel_settings import EmailSettings, SmsSettings, TelegramSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import (
    PermanentProviderError,
    ProviderError,
    RecipientUnreachableError,
    ThrottledError,
    TransientProviderError,
)
from notifyd.providers.email import EmailProvider
from notifyd.providers.http import LONGEST_RETRY_AFTER, seconds_value
from notifyd.providers.smtp_replies import enhanced_code
from notifyd.providers.telegram import TelegramProvider
from notifyd.providers.twilio import TwilioSmsProvider
from tests.fakes.smtp import CLOSING_REPLY, FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi, FloodControl, flood_body
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    NOT_MOBILE_NUMBER,
    UNSUBSCRIBED_NUMBER,
    VALID_NUMBER,
    FakeTwilioApi,
    twilio_error,
)
from tests.fakes.vendor import ForcedAnswer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "987654321:AAH-secret-token-Zx9yW8vU7tS6rQ5pO4n"
CHAT = 1001
GROUP = -100200300
BLOCKED = 4003
DEACTIVATED = 4004


def _message(
    *, chat: str | None = None, phone: str | None = None, email: str | None = None
) -> OutgoingMessage:
    recipient = Recipient(user_id=7, email=email, phone=phone, telegram_chat_id=chat)
    return OutgoingMessage(notification_id=42, recipient=recipient, subject="s", body="b")


async def _error(provider: Any, message: OutgoingMessage) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.send(message)
    return caught.value


# Telegram ----------------------------------------------------------------------------------


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeTelegramApi]:
    async with FakeTelegramApi(TOKEN, chats={CHAT, GROUP}, blocked={BLOCKED}) as fake:
        fake.deactivated.add(DEACTIVATED)
        yield fake


@pytest.fixture
async def telegram(telegram_api: FakeTelegramApi) -> AsyncIterator[TelegramProvider]:
    provider = TelegramProvider(
        TelegramSettings(bot_token=SecretStr(TOKEN), api_url=telegram_api.url, timeout=5.0)
    )
    yield provider
    await provider.close()


async def test_telegram_flood_control_pauses_the_bot_for_a_private_chat(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider
) -> None:
    telegram_api.rate_limit_next(retry_after=3, header=False)

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, ThrottledError)
    assert error.scope == "channel"
    assert error.retry_after == 3.0
    assert error.response == flood_body(3)
    assert str(error) == "Telegram: Too Many Requests: retry after 3"


@pytest.mark.parametrize("chat", [str(GROUP), "@some_channel"])
async def test_telegram_flood_control_in_a_group_pauses_only_that_chat(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider, chat: str
) -> None:
    telegram_api.rate_limit_next(retry_after=35, header=False)

    error = await _error(telegram, _message(chat=chat))

    assert isinstance(error, ThrottledError)
    assert (error.scope, error.retry_after) == ("recipient", 35.0)


async def test_telegram_fake_refuses_a_second_message_to_a_chat_within_a_second(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider
) -> None:
    telegram_api.limits = FloodControl()

    await telegram.send(_message(chat=str(CHAT)))
    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, ThrottledError)
    assert error.retry_after == 1.0
    assert [(r.chat_id, r.limit) for r in telegram_api.refused] == [(CHAT, "chat")]


async def test_telegram_fake_refuses_the_31st_message_in_a_second(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider
) -> None:
    telegram_api.limits = FloodControl()
    chats = range(5000, 5031)
    telegram_api.chats.update(chats)

    outcomes = []
    for chat in chats:
        try:
            await telegram.send(_message(chat=str(chat)))
            outcomes.append("sent")
        except ThrottledError:
            outcomes.append("throttled")

    # The first 30 fit in the second; the 31st comes within it on any sane machine.
    assert outcomes[:30] == ["sent"] * 30
    assert outcomes[30] == "throttled"
    assert telegram_api.refused[0].limit == "bot"


@pytest.mark.parametrize(
    ("chat", "description"),
    [
        (BLOCKED, "Forbidden: bot was blocked by the user"),
        (DEACTIVATED, "Forbidden: user is deactivated"),
        (5555, "Bad Request: chat not found"),
    ],
)
async def test_telegram_unreachable_chats_are_suppressed(
    telegram: TelegramProvider, chat: int, description: str
) -> None:
    error = await _error(telegram, _message(chat=str(chat)))

    assert isinstance(error, RecipientUnreachableError)
    assert error.reason == f"Telegram: {description}"
    assert error.response is not None
    assert error.response["description"] == description


@pytest.mark.parametrize(
    "description",
    [
        "Forbidden: bot was kicked from the supergroup chat",
        "Forbidden: bot is not a member of the channel chat",
        "Forbidden: bot can't initiate conversation with a user",
        "Bad Request: group chat was upgraded to a supergroup chat",
    ],
)
async def test_telegram_other_answers_that_mean_never(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider, description: str
) -> None:
    status = 403 if description.startswith("Forbidden") else 400
    telegram_api.force(
        ForcedAnswer(status, {"ok": False, "error_code": status, "description": description})
    )

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, RecipientUnreachableError)


@pytest.mark.parametrize(
    "body",
    [
        # A 403 that says something else: permanent for this message, no suppression.
        {"ok": False, "error_code": 403, "description": "Forbidden: bot can't send messages"},
        {"ok": False, "error_code": 403, "description": "Forbidden: something new"},
        {"ok": False, "error_code": 403},
        {"ok": False, "error_code": 403, "description": ["not", "a", "string"]},
    ],
)
async def test_telegram_unexpected_403_is_permanent_but_suppresses_nothing(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider, body: dict[str, Any]
) -> None:
    telegram_api.force(ForcedAnswer(403, body))

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, PermanentProviderError)
    assert not isinstance(error, RecipientUnreachableError)


@pytest.mark.parametrize(
    ("retry_after", "header", "expected"),
    [
        (10**400, None, LONGEST_RETRY_AFTER),  # JSON allows such an integer
        (1e308, None, LONGEST_RETRY_AFTER),
        (-5, None, None),
        (-5, "4", 4.0),  # a nonsense body value: the header's, if any
        ("soon", None, None),
        ("12", None, 12.0),
        (True, None, None),
        (None, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date long past: at once
        ({"seconds": 3}, None, None),
    ],
)
async def test_telegram_odd_retry_after_values(
    telegram_api: FakeTelegramApi,
    telegram: TelegramProvider,
    retry_after: object,
    header: str | None,
    expected: float | None,
) -> None:
    body: dict[str, Any] = {"ok": False, "error_code": 429, "description": "Too Many Requests"}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    telegram_api.force(ForcedAnswer(429, body, {"Retry-After": header} if header else {}))

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, ThrottledError)
    assert error.retry_after == expected


async def test_telegram_429_without_json_still_pauses(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider
) -> None:
    telegram_api.force(ForcedAnswer(429, "<html>slow down</html>", {"Retry-After": "2"}))

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, ThrottledError)
    assert error.retry_after == 2.0


async def test_telegram_nan_retry_after_is_ignored(
    telegram_api: FakeTelegramApi, telegram: TelegramProvider
) -> None:
    # Python's JSON reader takes NaN and Infinity, which are not JSON.
    raw = '{"ok": false, "error_code": 429, "parameters": {"retry_after": NaN}}'
    telegram_api.force(ForcedAnswer(429, raw))

    error = await _error(telegram, _message(chat=str(CHAT)))

    assert isinstance(error, ThrottledError)
    assert error.retry_after is None


# Twilio ------------------------------------------------------------------------------------


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi() as fake:
        yield fake


@pytest.fixture
async def twilio(twilio_api: FakeTwilioApi) -> AsyncIterator[TwilioSmsProvider]:
    provider = TwilioSmsProvider(
        SmsSettings(
            provider="twilio",
            api_url=twilio_api.url,
            account_sid=ACCOUNT_SID,
            auth_token=SecretStr(AUTH_TOKEN),
            from_number=FROM_NUMBER,
            timeout=5.0,
        )
    )
    yield provider
    await provider.close()


async def test_twilio_429_pauses_the_channel_for_retry_after(
    twilio_api: FakeTwilioApi, twilio: TwilioSmsProvider
) -> None:
    twilio_api.rate_limit_next(retry_after=7)

    error = await _error(twilio, _message(phone=VALID_NUMBER))

    assert isinstance(error, ThrottledError)
    assert (error.scope, error.retry_after) == ("channel", 7.0)
    assert error.response is not None
    assert error.response["code"] == 20429


async def test_twilio_fake_enforces_its_rate(
    twilio_api: FakeTwilioApi, twilio: TwilioSmsProvider
) -> None:
    twilio_api.rate_limit = 2

    await twilio.send(_message(phone=VALID_NUMBER))
    await twilio.send(_message(phone=VALID_NUMBER))
    error = await _error(twilio, _message(phone=VALID_NUMBER))

    assert isinstance(error, ThrottledError)
    assert error.retry_after == 1.0
    assert twilio_api.refused == 1


async def test_twilio_full_queue_is_a_pause(
    twilio_api: FakeTwilioApi, twilio: TwilioSmsProvider
) -> None:
    message = "This 'From' number has exceeded the maximum number of queued messages"
    twilio_api.force(ForcedAnswer(400, twilio_error(400, 21611, message)))

    error = await _error(twilio, _message(phone=VALID_NUMBER))

    assert isinstance(error, ThrottledError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),
        ("99999999999999", LONGEST_RETRY_AFTER, LONGEST_RETRY_AFTER),
        ("-1", None, None),
        ("in a while", None, None),
    ],
)
async def test_twilio_odd_retry_after_headers(
    twilio_api: FakeTwilioApi,
    twilio: TwilioSmsProvider,
    header: str,
    low: float | None,
    high: float | None,
) -> None:
    body = twilio_error(429, 20429, "Too Many Requests")
    twilio_api.force(ForcedAnswer(429, body, {"Retry-After": header}))

    error = await _error(twilio, _message(phone=VALID_NUMBER))

    assert isinstance(error, ThrottledError)
    if low is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None
        assert low <= error.retry_after <= (high or low)


@pytest.mark.parametrize(
    ("phone", "code", "reason"),
    [
        (UNSUBSCRIBED_NUMBER, 21610, "replied STOP"),
        (NOT_MOBILE_NUMBER, 21614, "not a mobile number"),
    ],
)
async def test_twilio_stop_and_landline_are_suppressed(
    twilio: TwilioSmsProvider, phone: str, code: int, reason: str
) -> None:
    error = await _error(twilio, _message(phone=phone))

    assert isinstance(error, RecipientUnreachableError)
    assert reason in error.reason
    assert str(code) in error.reason
    assert phone not in error.reason


async def test_twilio_429_without_a_code_is_still_a_pause(
    twilio_api: FakeTwilioApi, twilio: TwilioSmsProvider
) -> None:
    twilio_api.force(ForcedAnswer(429, {"code": "20429"}, {"Retry-After": "5"}))

    error = await _error(twilio, _message(phone=VALID_NUMBER))

    assert isinstance(error, ThrottledError)
    assert error.retry_after == 5.0


# SMTP --------------------------------------------------------------------------------------


@pytest.fixture
async def smtp_server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as fake:
        yield fake


def _email(server: FakeSmtpServer) -> EmailProvider:
    return EmailProvider(
        EmailSettings(
            host="127.0.0.1", port=server.port, from_address="notifyd@example.com", timeout=5.0
        )
    )


@pytest.mark.parametrize(
    ("reply", "stage", "scope"),
    [
        ("451 4.7.1 Rate limit exceeded, try again later", "rcpt", "recipient"),
        ("450 4.7.1 Greylisted, come back later", "rcpt", "recipient"),
        ("451 4.7.1 Too much mail from you", "data", "channel"),
        ("421 4.7.0 Too many connections", "rcpt", "channel"),
        ("421 Service not available", "data", "channel"),
    ],
)
async def test_smtp_limits_are_pauses(
    smtp_server: FakeSmtpServer, reply: str, stage: Any, scope: str
) -> None:
    smtp_server.mode, smtp_server.fail_at, smtp_server.tempfail_reply = "tempfail", stage, reply

    error = await _error(_email(smtp_server), _message(email="ivan@example.org"))

    assert isinstance(error, ThrottledError)
    assert error.scope == scope
    assert error.retry_after is None  # SMTP says no time: the pacer's default pause
    assert error.response is not None
    assert error.response["smtp_code"] == int(reply[:3])


@pytest.mark.parametrize(
    "reply",
    [
        "451 4.3.0 Temporary failure, try again later",
        "450 4.2.1 Mailbox busy",
        "452 4.3.1 Insufficient system storage",
        "451 Local error",  # no enhanced code at all
        "451 4.70.1 not a 4.7 code",
    ],
)
async def test_smtp_ordinary_temporary_failures_stay_transient(
    smtp_server: FakeSmtpServer, reply: str
) -> None:
    smtp_server.mode, smtp_server.tempfail_reply = "tempfail", reply

    error = await _error(_email(smtp_server), _message(email="ivan@example.org"))

    assert isinstance(error, TransientProviderError)
    assert not isinstance(error, ThrottledError)


async def test_smtp_421_then_closing_is_a_pause_and_the_next_send_reconnects(
    smtp_server: FakeSmtpServer,
) -> None:
    smtp_server.rate_limit = 1
    smtp_server.rate_limit_reply = CLOSING_REPLY
    provider = _email(smtp_server)
    try:
        await provider.send(_message(email="ivan@example.org"))
        error = await _error(provider, _message(email="ivan@example.org"))
        smtp_server.rate_limit = None
        await provider.send(_message(email="ivan@example.org"))
    finally:
        await provider.close()

    assert isinstance(error, ThrottledError)
    assert error.scope == "channel"
    assert smtp_server.refused == 1
    assert len(smtp_server.received) == 2
    assert smtp_server.connection_count == 2  # the closed session was not reused


async def test_smtp_rate_limited_server_counts_what_it_refused(
    smtp_server: FakeSmtpServer,
) -> None:
    smtp_server.rate_limit = 2
    provider = _email(smtp_server)
    try:
        outcomes = []
        for _ in range(3):
            try:
                await provider.send(_message(email="ivan@example.org"))
                outcomes.append("sent")
            except ThrottledError as exc:
                outcomes.append(exc.scope)
    finally:
        await provider.close()

    assert outcomes == ["sent", "sent", "channel"]  # refused at MAIL: the server's limit
    assert smtp_server.refused == 1


@pytest.mark.parametrize(
    ("greeting", "throttled"),
    [
        (b"421 4.7.0 Too many connections from your host\r\n", True),
        (b"421 Service not available\r\n", True),
        (b"450 4.7.1 Try again later\r\n", True),
        (b"554 5.7.1 Go away\r\n", False),
    ],
)
async def test_smtp_a_refusal_at_the_greeting_pauses_the_channel(
    greeting: bytes, throttled: bool
) -> None:
    # A server that will not take another connection says so before any command, in its
    # greeting: the whole channel pauses (nothing about a recipient was said yet).
    async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = EmailProvider(
        EmailSettings(host="127.0.0.1", port=port, from_address="n@example.com", timeout=5.0)
    )
    try:
        error = await _error(provider, _message(email="ivan@example.org"))
    finally:
        server.close()
        await server.wait_closed()

    assert isinstance(error, ThrottledError) is throttled
    if isinstance(error, ThrottledError):
        assert error.scope == "channel"
    else:
        assert isinstance(error, PermanentProviderError)
    assert error.response == {
        "smtp_code": int(greeting[:3]),
        "smtp_message": greeting[4:].decode().strip(),
    }


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_smtp_no_such_mailbox_is_suppressed(smtp_server: FakeSmtpServer, stage: Any) -> None:
    smtp_server.mode, smtp_server.fail_at = "reject", stage

    error = await _error(_email(smtp_server), _message(email="nobody@example.org"))

    assert isinstance(error, RecipientUnreachableError)
    assert error.reason == "no such mailbox: 550 5.1.1 Mailbox does not exist"


@pytest.mark.parametrize(
    "reply",
    ["550 5.7.1 Message refused as spam", "554 5.1.10 null MX", "550 Mailbox unavailable"],
)
async def test_smtp_other_refusals_suppress_nothing(
    smtp_server: FakeSmtpServer, reply: str
) -> None:
    smtp_server.mode, smtp_server.reject_reply = "reject", reply

    error = await _error(_email(smtp_server), _message(email="ivan@example.org"))

    assert isinstance(error, PermanentProviderError)
    assert not isinstance(error, RecipientUnreachableError)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("4.7.1 Rate limited", (4, 7, 1)),
        ("  5.1.1 <x@y>: unknown", (5, 1, 1)),
        ("5.1.10 null MX", (5, 1, 10)),
        ("4.7.1234 too long", ()),
        ("Rate limited 4.7.1", ()),
        ("", ()),
    ],
)
def test_enhanced_codes_are_read_only_at_the_start(text: str, code: tuple[int, ...]) -> None:
    assert enhanced_code(text) == code


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0, 0.0),
        (2.5, 2.5),
        ("7", 7.0),
        (" 7 ", 7.0),
        (-1, None),
        (-(10**400), None),
        (10**400, LONGEST_RETRY_AFTER),
        (float("nan"), None),
        (float("inf"), None),
        ("inf", None),
        (False, None),
        (None, None),
        ([3], None),
    ],
)
def test_seconds_value(value: object, seconds: float | None) -> None:
    assert seconds_value(value) == seconds
