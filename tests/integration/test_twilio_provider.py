"""TwilioSmsProvider against FakeTwilioApi (a real local HTTP server), and end to end."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from notifyd.channel_settings import SmsSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import PermanentProviderError, ProviderError, TransientProviderError
from notifyd.providers.twilio import TwilioSmsProvider
from tests.fakes.leaks import error_texts
from tests.fakes.smtp import unused_port
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    INVALID_NUMBER,
    MESSAGING_SERVICE_SID,
    NO_PERMISSION_NUMBER,
    NOT_MOBILE_NUMBER,
    UNSUBSCRIBED_NUMBER,
    VALID_NUMBER,
    FakeTwilioApi,
    ForcedAnswer,
    segments,
    twilio_error,
)
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]

CREDENTIALS = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
SECRETS = (AUTH_TOKEN, CREDENTIALS)
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
SUBJECT = "Заказ №42"
BODY = "Ваш заказ подтверждён & отправлен: 100% = ok?"
TEXT = f"{SUBJECT}\n\n{BODY}"
SID = re.compile(r"SM[0-9a-f]{32}")


def _message(phone: str | None = VALID_NUMBER, body: str = BODY) -> OutgoingMessage:
    recipient = Recipient(user_id=7, email=None, phone=phone, telegram_chat_id=None)
    return OutgoingMessage(notification_id=42, recipient=recipient, subject=SUBJECT, body=body)


def _settings(api: FakeTwilioApi | str, **overrides: Any) -> SmsSettings:
    url = api if isinstance(api, str) else api.url
    values: dict[str, Any] = {
        "provider": "twilio",
        "api_url": url,
        "account_sid": ACCOUNT_SID,
        "auth_token": SecretStr(AUTH_TOKEN),
        "from_number": FROM_NUMBER,
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmsSettings(**values)


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.fixture
async def api() -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi() as fake:
        yield fake


@pytest.fixture
async def provider(api: FakeTwilioApi) -> AsyncIterator[TwilioSmsProvider]:
    provider = TwilioSmsProvider(_settings(api))
    await provider.start()
    yield provider
    await provider.close()


async def _failure(provider: TwilioSmsProvider, message: OutgoingMessage) -> ProviderError:
    """Send, expecting a provider error; check no secret is anywhere in it or in the logs."""
    with capture_logs() as logs, pytest.raises(ProviderError) as caught:
        await provider.send(message)
    _assert_no_secret(error_texts(caught.value), repr(logs))
    return caught.value


async def _sent_with(settings: SmsSettings, message: OutgoingMessage) -> dict[str, Any]:
    provider = TwilioSmsProvider(settings)
    try:
        return await provider.send(message)
    finally:
        await provider.close()


# Success


async def test_sends_the_text_intact_and_returns_the_message_sid(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    with capture_logs() as logs:
        answer = await provider.send(_message())

    [created] = await api.wait_for_messages(1)
    assert created["body"] == TEXT
    assert created["to"] == VALID_NUMBER
    assert created["from"] == FROM_NUMBER
    assert SID.fullmatch(answer["sid"])
    assert answer == {
        "provider": "twilio",
        "sid": created["sid"],
        "status": "queued",
        "to": VALID_NUMBER,
        "num_segments": segments(TEXT),
    }
    _assert_no_secret(repr(answer), repr(logs))


async def test_posts_a_form_with_basic_auth_to_the_messages_resource(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    await provider.send(_message())

    [request] = api.requests
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.form == {"To": VALID_NUMBER, "From": FROM_NUMBER, "Body": TEXT}
    assert (request.username, request.password) == (ACCOUNT_SID, AUTH_TOKEN)


async def test_message_without_subject_is_the_body_alone(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    recipient = Recipient(user_id=7, email=None, phone=VALID_NUMBER, telegram_chat_id=None)
    await provider.send(OutgoingMessage(42, recipient, subject="", body="Код: 1234"))

    assert api.requests[0].form["Body"] == "Код: 1234"


async def test_each_message_gets_its_own_sid(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    first = await provider.send(_message())
    second = await provider.send(_message())

    assert first["sid"] != second["sid"]
    assert [m["sid"] for m in await api.wait_for_messages(2)] == [first["sid"], second["sid"]]


async def test_messaging_service_replaces_the_from_number(api: FakeTwilioApi) -> None:
    settings = _settings(api, from_number="", messaging_service_sid=MESSAGING_SERVICE_SID)

    answer = await _sent_with(settings, _message())

    assert api.requests[0].form == {
        "To": VALID_NUMBER,
        "MessagingServiceSid": MESSAGING_SERVICE_SID,
        "Body": TEXT,
    }
    assert answer["status"] == "accepted"
    assert api.messages[0]["messaging_service_sid"] == MESSAGING_SERVICE_SID


async def test_messaging_service_wins_when_both_are_set(api: FakeTwilioApi) -> None:
    settings = _settings(api, messaging_service_sid=MESSAGING_SERVICE_SID)

    await _sent_with(settings, _message())

    assert "From" not in api.requests[0].form
    assert api.requests[0].form["MessagingServiceSid"] == MESSAGING_SERVICE_SID


async def test_works_without_start_and_after_close(api: FakeTwilioApi) -> None:
    provider = TwilioSmsProvider(_settings(api))
    try:
        await provider.send(_message())
        await provider.close()
        await provider.send(_message())
    finally:
        await provider.close()

    assert len(await api.wait_for_messages(2)) == 2


async def test_created_with_an_unreadable_answer_still_counts_as_sent(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    # 201 means Twilio created the message: retrying would send it twice.
    api.force(ForcedAnswer(201, "<html>created</html>"))

    answer = await provider.send(_message())

    assert answer == {
        "provider": "twilio",
        "sid": None,
        "status": None,
        "to": VALID_NUMBER,
        "num_segments": None,
    }


@pytest.mark.parametrize(
    "count", ["\u00b2", "\u2460", "\u0661"], ids=["superscript", "circled", "arabic-indic"]
)
async def test_created_with_a_count_in_other_digits_still_counts_as_sent(
    api: FakeTwilioApi, provider: TwilioSmsProvider, count: str
) -> None:
    # str.isdigit() is true for "²", which int() refuses: the answer to a message Twilio
    # had created raised ValueError, and a retry would have sent it twice.
    api.force(ForcedAnswer(201, {"sid": "SM1", "status": "queued", "num_segments": count}))

    answer = await provider.send(_message())

    assert (answer["sid"], answer["num_segments"]) == ("SM1", None)


async def test_created_but_the_answer_lost_midway_still_counts_as_sent(
    api: FakeTwilioApi,
) -> None:
    # The status line said 201 before the connection stalled: a retry would send twice.
    api.lose_next_answer()
    provider = TwilioSmsProvider(_settings(api, timeout=0.3))
    try:
        with capture_logs() as logs:
            answer = await provider.send(_message())
    finally:
        await provider.close()

    assert answer["sid"] is None
    assert answer["to"] == VALID_NUMBER
    assert len(api.messages) == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["twilio_answer_lost"]


# Permanent failures


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        (INVALID_NUMBER, 21211),
        ("79001234567", 21211),  # not E.164: no "+"
        (UNSUBSCRIBED_NUMBER, 21610),
        (NOT_MOBILE_NUMBER, 21614),
        (NO_PERMISSION_NUMBER, 21408),
    ],
)
async def test_refused_recipients_are_permanent_with_twilio_s_error(
    api: FakeTwilioApi, provider: TwilioSmsProvider, phone: str, code: int
) -> None:
    error = await _failure(provider, _message(phone=phone))

    assert isinstance(error, PermanentProviderError)
    assert error.response is not None
    assert error.response["http_status"] == 400
    assert error.response["code"] == code
    assert error.response["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert error.response["message"]
    assert str(error).startswith(f"Twilio error {code}: ")
    assert api.messages == []


async def test_unsubscribed_answer_is_kept_as_twilio_sent_it(provider: TwilioSmsProvider) -> None:
    error = await _failure(provider, _message(phone=UNSUBSCRIBED_NUMBER))

    assert error.response == {
        "http_status": 400,
        "code": 21610,
        "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610",
    }
    assert str(error) == "Twilio error 21610: Attempt to send to unsubscribed recipient"


async def test_the_number_is_masked_in_the_error_text_only(provider: TwilioSmsProvider) -> None:
    # The error text goes to the logs (attempt_finished); the vendor's answer stays whole.
    error = await _failure(provider, _message(phone=INVALID_NUMBER))

    assert INVALID_NUMBER not in str(error)
    assert "*******0001" in str(error)
    assert error.response is not None
    assert INVALID_NUMBER in error.response["message"]


async def test_sender_not_owned_by_the_account_is_permanent(api: FakeTwilioApi) -> None:
    provider = TwilioSmsProvider(_settings(api, from_number="+15550001111"))
    try:
        error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, PermanentProviderError)
    assert error.response is not None
    assert error.response["code"] == 21606


async def test_wrong_token_is_permanent_and_never_shown(api: FakeTwilioApi) -> None:
    wrong = "0badc0ffee0badc0ffee0badc0ffee00"
    provider = TwilioSmsProvider(_settings(api, auth_token=SecretStr(wrong)))
    try:
        with capture_logs() as logs, pytest.raises(PermanentProviderError) as caught:
            await provider.send(_message())
    finally:
        await provider.close()

    error = caught.value
    assert str(error) == (
        "Twilio error 20003: Authenticate (check channels.sms.account_sid and auth_token)"
    )
    assert error.response == {
        "http_status": 401,
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "detail": "Your AccountSid or AuthToken was incorrect.",
    }
    wrong_credentials = base64.b64encode(f"{ACCOUNT_SID}:{wrong}".encode()).decode()
    for text in (error_texts(error), repr(logs)):
        assert wrong not in text
        assert wrong_credentials not in text
    assert api.requests[0].password == wrong
    assert api.messages == []


async def test_another_account_sid_is_refused(api: FakeTwilioApi) -> None:
    other = "AC" + "9" * 32
    provider = TwilioSmsProvider(_settings(api, account_sid=other))
    try:
        error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, PermanentProviderError)
    assert error.response is not None
    assert error.response["http_status"] == 401
    assert api.requests[0].path == f"/2010-04-01/Accounts/{other}/Messages.json"


async def test_forbidden_is_permanent(api: FakeTwilioApi, provider: TwilioSmsProvider) -> None:
    api.force(ForcedAnswer(403, twilio_error(403, 20005, "Account not active")))

    error = await _failure(provider, _message())

    assert isinstance(error, PermanentProviderError)
    assert "check channels.sms.account_sid and auth_token" in str(error)


async def test_wrong_api_url_path_is_permanent(api: FakeTwilioApi) -> None:
    provider = TwilioSmsProvider(_settings(f"{api.url}/proxy"))
    try:
        error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, PermanentProviderError)
    assert error.response is not None
    assert (error.response["http_status"], error.response["code"]) == (404, 20404)


async def test_a_redirect_is_not_followed(api: FakeTwilioApi, provider: TwilioSmsProvider) -> None:
    # Following it would send the form (and the credentials) somewhere else.
    api.force(ForcedAnswer(307, "", {"Location": f"http://127.0.0.1:{unused_port()}/"}))

    error = await _failure(provider, _message())

    assert isinstance(error, PermanentProviderError)
    assert str(error) == "Twilio answered HTTP 307 without JSON"
    assert len(api.requests) == 1


async def test_non_json_4xx_is_permanent(api: FakeTwilioApi, provider: TwilioSmsProvider) -> None:
    api.force(ForcedAnswer(400, "<html>bad request</html>"))

    error = await _failure(provider, _message())

    assert isinstance(error, PermanentProviderError)
    assert error.response == {"http_status": 400, "body": "<html>bad request</html>"}


async def test_too_long_text_fails_permanently_without_a_request(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    body = "я" * (1600 - len(SUBJECT) - 1)  # subject + "\n\n" + body = 1601 characters

    error = await _failure(provider, _message(body=body))

    assert isinstance(error, PermanentProviderError)
    assert str(error) == "SMS text is 1601 characters long; Twilio accepts at most 1600"
    assert api.requests == []


async def test_text_of_exactly_1600_characters_is_sent(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    body = "я" * (1600 - len(SUBJECT) - 2)

    answer = await provider.send(_message(body=body))

    assert len(api.messages[0]["body"]) == 1600
    assert answer["num_segments"] == 24  # UCS-2: 67 characters per segment


async def test_twilio_s_own_length_limit_is_permanent(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    # Should Twilio count differently from us (UTF-16 units), its 21617 also falls back.
    api.force(
        ForcedAnswer(
            400,
            twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            ),
        )
    )

    error = await _failure(provider, _message())

    assert isinstance(error, PermanentProviderError)
    assert error.response is not None
    assert error.response["code"] == 21617


@pytest.mark.parametrize("phone", [None, ""])
async def test_missing_phone_is_permanent(
    api: FakeTwilioApi, provider: TwilioSmsProvider, phone: str | None
) -> None:
    with pytest.raises(PermanentProviderError, match="user has no phone number"):
        await provider.send(_message(phone=phone))

    assert api.requests == []


# Transient failures


async def test_rate_limit_is_transient_and_honours_retry_after(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    api.rate_limit_next(2, retry_after=7)

    for _ in range(2):
        with capture_logs() as logs, pytest.raises(TransientProviderError) as caught:
            await provider.send(_message())
        error = caught.value
        assert error.retry_after == 7.0
        assert error.response == {
            "http_status": 429,
            "code": 20429,
            "message": "Too Many Requests",
            "more_info": "https://www.twilio.com/docs/errors/20429",
        }
        assert [e["retry_after"] for e in logs if e["event"] == "twilio_rate_limited"] == [7.0]

    assert SID.fullmatch((await provider.send(_message()))["sid"])
    assert len(api.requests) == 3


async def test_rate_limit_without_retry_after(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    api.rate_limit_next(header=False)

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert error.retry_after is None


async def test_retry_after_as_an_http_date(api: FakeTwilioApi, provider: TwilioSmsProvider) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    api.force(
        ForcedAnswer(429, twilio_error(429, 20429, "Too Many Requests"), {"Retry-After": when})
    )

    error = await _failure(provider, _message())

    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 30


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20503)])
async def test_server_errors_are_transient(
    api: FakeTwilioApi, provider: TwilioSmsProvider, status: int, code: int
) -> None:
    api.fail_next(3, status=status)

    for _ in range(3):
        error = await _failure(provider, _message())
        assert isinstance(error, TransientProviderError)
        assert error.response is not None
        assert (error.response["http_status"], error.response["code"]) == (status, code)
        assert str(error).startswith(f"Twilio error {code}: ")

    assert (await provider.send(_message()))["status"] == "queued"
    assert len(api.messages) == 1


async def test_server_error_with_retry_after_is_honoured(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    api.force(
        ForcedAnswer(503, twilio_error(503, 20503, "Service unavailable"), {"Retry-After": "4"})
    )

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert error.retry_after == 4.0


async def test_non_json_5xx_is_transient_with_a_truncated_body(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    api.force(ForcedAnswer(502, "<html>" + "bad gateway " * 200 + "</html>"))

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert str(error) == "Twilio answered HTTP 502 without JSON"
    assert error.response is not None
    assert error.response["body"].startswith("<html>bad gateway")
    assert len(error.response["body"]) <= 500


async def test_full_sender_queue_is_transient(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    message = "This 'From' number has exceeded the maximum number of queued messages"
    api.force(ForcedAnswer(400, twilio_error(400, 21611, message)))

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)


async def test_server_down_is_transient_and_unchained(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    await api.stop()

    error = await _failure(provider, _message())

    assert isinstance(error, TransientProviderError)
    assert str(error).startswith("Twilio unreachable: ")
    # aiohttp's exceptions may carry the request headers: they must not be chained at all.
    assert error.__cause__ is None
    assert error.__context__ is None

    await api.start()
    assert (await provider.send(_message()))["status"] == "queued"


async def test_refused_port_is_transient() -> None:
    provider = TwilioSmsProvider(_settings(f"http://127.0.0.1:{unused_port()}"))
    try:
        error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, TransientProviderError)
    assert error.__context__ is None


async def test_hang_beyond_the_timeout_is_transient(api: FakeTwilioApi) -> None:
    api.delay = 30.0
    provider = TwilioSmsProvider(_settings(api, timeout=0.3))
    try:
        # Ended by the attempt's own timeout: the outer deadline is a third of the delay.
        async with asyncio.timeout(10):
            error = await _failure(provider, _message())
    finally:
        await provider.close()

    assert isinstance(error, TransientProviderError)
    assert "Timeout" in str(error)
    assert error.__context__ is None
    assert len(await api.wait_for_requests(1)) == 1
    assert api.messages == []


async def test_fail_always_fails_transiently_without_a_request(api: FakeTwilioApi) -> None:
    provider = TwilioSmsProvider(_settings(api, fail_always=True))
    try:
        with pytest.raises(TransientProviderError, match="SMS_FAIL_ALWAYS is set"):
            await provider.send(_message())
    finally:
        await provider.close()

    assert api.requests == []


# Secrets


async def test_secrets_echoed_in_an_answer_are_scrubbed(
    api: FakeTwilioApi, provider: TwilioSmsProvider
) -> None:
    echo = f"bad credentials {AUTH_TOKEN} (Authorization: Basic {CREDENTIALS})"
    api.force(ForcedAnswer(400, twilio_error(400, 20003, echo) | {"detail": AUTH_TOKEN}))
    api.force(ForcedAnswer(500, f"<pre>{AUTH_TOKEN}</pre>"))

    first = await _failure(provider, _message())
    second = await _failure(provider, _message())

    assert first.response is not None
    assert first.response["message"] == "bad credentials *** (Authorization: Basic ***)"
    assert first.response["detail"] == "***"
    assert second.response == {"http_status": 500, "body": "<pre>***</pre>"}


def test_the_provider_s_repr_shows_no_secret() -> None:
    provider = TwilioSmsProvider(_settings("https://api.twilio.com"))

    _assert_no_secret(repr(provider), str(provider), repr(vars(provider)["_settings"]))


# The fake answers like Twilio for other clients too


async def test_fake_refuses_incomplete_forms_like_twilio(api: FakeTwilioApi) -> None:
    auth = {"Authorization": f"Basic {CREDENTIALS}"}
    cases = {
        21604: {"From": FROM_NUMBER, "Body": "hi"},
        21603: {"To": VALID_NUMBER, "Body": "hi"},
        21602: {"To": VALID_NUMBER, "From": FROM_NUMBER},
    }
    async with aiohttp.ClientSession(headers=auth) as session:
        for code, form in cases.items():
            async with session.post(api.url + MESSAGES_PATH, data=form) as response:
                assert (response.status, (await response.json())["code"]) == (400, code)
        # Twilio reads only form fields: a JSON body has no "To".
        async with session.post(api.url + MESSAGES_PATH, json=cases[21602]) as response:
            assert (await response.json())["code"] == 21604
        async with session.get(api.url + MESSAGES_PATH) as response:
            assert (await response.json())["messages"] == []


async def test_fake_asks_for_credentials_like_twilio(api: FakeTwilioApi) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + MESSAGES_PATH, data={"To": VALID_NUMBER}) as response,
    ):
        body = await response.json()
        challenge = response.headers["WWW-Authenticate"]

    assert response.status == 401
    assert body["code"] == 20003
    assert challenge == 'Basic realm="Twilio API"'
    assert api.requests[0].username is None


# End to end: the in-process daemon with Twilio as its SMS provider


async def test_daemon_delivers_sms_through_twilio(
    daemon_factory: DaemonFactory, twilio_api: FakeTwilioApi
) -> None:
    daemon = await daemon_factory(channels={"sms": twilio_api.settings()})
    user_id = await daemon.create_user(phone=VALID_NUMBER, telegram_chat_id=1001)

    answer = await daemon.notify(
        user_id=user_id, subject="Привет!", message="Тестовое уведомление", channels=["sms"]
    )
    finished = await daemon.wait_finished(answer["id"])

    [created] = await twilio_api.wait_for_messages(1)
    assert created["body"] == "Привет!\n\nТестовое уведомление"
    assert finished["status"] == "sent"
    [attempt] = finished["attempts"]
    assert (attempt["channel"], attempt["status"]) == ("sms", "success")
    assert attempt["provider_response"] == {
        "provider": "twilio",
        "sid": created["sid"],
        "status": "queued",
        "to": VALID_NUMBER,
        "num_segments": 1,
    }
    _assert_no_secret(repr(finished))


async def test_daemon_falls_back_after_an_unsubscribed_number(
    daemon_factory: DaemonFactory, twilio_api: FakeTwilioApi, telegram_api: FakeTelegramApi
) -> None:
    daemon = await daemon_factory(channels={"sms": twilio_api.settings()})
    user_id = await daemon.create_user(phone=UNSUBSCRIBED_NUMBER, telegram_chat_id=1001)

    answer = await daemon.notify(user_id=user_id, message="hello", channels=["sms", "telegram"])
    finished = await daemon.wait_finished(answer["id"])

    assert finished["status"] == "sent"
    trail = [(a["channel"], a["attempt"], a["status"]) for a in finished["attempts"]]
    assert trail == [("sms", 1, "failed"), ("telegram", 1, "success")]
    sms = finished["attempts"][0]
    assert sms["error"] == "Twilio error 21610: Attempt to send to unsubscribed recipient"
    assert sms["provider_response"]["code"] == 21610
    assert twilio_api.messages == []
    assert len(await telegram_api.wait_for_messages(1)) == 1
    _assert_no_secret(repr(finished))
