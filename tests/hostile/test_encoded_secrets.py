"""Secrets in the forms they travel in, echoed back by a vendor, never reach an error.

An SMTP server that echoes the AUTH PLAIN blob (base64 of `\\0user\\0password`) or AUTH
LOGIN's base64 password put it, unmasked, into the attempt row, the API, the dashboard and
the log. Each vendor here echoes each encoded form of its secret, against the real fakes;
the forms are computed in the test, not taken from the code under test.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr

from notifyd.channel_settings import EmailSettings, SmsSettings, TelegramSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import PermanentProviderError, ProviderError
from notifyd.providers.email import EmailProvider
from notifyd.providers.telegram import TelegramProvider
from notifyd.providers.twilio import TwilioSmsProvider
from notifyd.redaction import REDACTED
from tests.fakes.leaks import error_texts
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilioApi, twilio_error
from tests.fakes.vendor import ForcedAnswer

USERNAME = "mailer@example.com"
PASSWORD = "smtp-Pa55/w+rd=x?"
TOKEN = "123456:telegram-Token/with+chars"
TWILIO_TOKEN = "twilio-auth-token-0123456789ab"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def forms(secret: str, *inside: str) -> set[str]:
    """The secret as is, URL-quoted, in base64; and each string it is sent inside, in base64."""
    found = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        b64(secret),
        b64(secret).rstrip("="),
    }
    found |= {b64(whole) for whole in inside}
    return found


SMTP_FORMS = forms(PASSWORD, f"\0{USERNAME}\0{PASSWORD}")


def _message(**contacts: Any) -> OutgoingMessage:
    recipient = Recipient(
        user_id=1,
        email=contacts.get("email"),
        phone=contacts.get("phone"),
        telegram_chat_id=contacts.get("telegram_chat_id"),
    )
    return OutgoingMessage(notification_id=1, recipient=recipient, subject="s", body="b")


async def _failure(provider: Any, message: OutgoingMessage) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.send(message)
    return caught.value


def assert_no_form(error: ProviderError, secret_forms: set[str]) -> str:
    texts = error_texts(error)
    leaked = sorted(form for form in secret_forms if form in texts)
    assert leaked == [], texts
    return texts


# SMTP


@pytest.fixture
async def echoing_smtp(request: pytest.FixtureRequest) -> AsyncIterator[FakeSmtpServer]:
    mechanism: str = request.param
    async with FakeSmtpServer(
        username=USERNAME, password=PASSWORD, auth_mechanisms=(mechanism,), echo_auth=True
    ) as server:
        yield server


def _email_provider(server: FakeSmtpServer) -> EmailProvider:
    return EmailProvider(
        EmailSettings(
            host=server.host,
            port=server.port,
            username=USERNAME,
            password=SecretStr(PASSWORD),
            from_address="n@example.com",
            timeout=5,
        )
    )


@pytest.mark.parametrize("echoing_smtp", ["PLAIN", "LOGIN"], indirect=True)
async def test_an_echoed_smtp_auth_exchange_is_masked(echoing_smtp: FakeSmtpServer) -> None:
    error = await _failure(_email_provider(echoing_smtp), _message(email="a@example.com"))

    assert isinstance(error, PermanentProviderError)
    assert echoing_smtp.failed_logins == 1
    texts = assert_no_form(error, SMTP_FORMS)
    assert f"Authentication failed for {REDACTED}" in texts
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.parametrize("form", sorted(SMTP_FORMS))
async def test_any_form_of_the_password_in_a_reply_is_masked(form: str) -> None:
    async with FakeSmtpServer(username=USERNAME, password=PASSWORD) as server:
        server.mode = "reject"
        server.fail_at = "data"
        server.reject_reply = f"550 5.7.1 refused: you are {form}, are you not?"

        error = await _failure(_email_provider(server), _message(email="a@example.com"))

    texts = assert_no_form(error, SMTP_FORMS)
    assert f"refused: you are {REDACTED}, are you not?" in texts
    assert error.response == {
        "smtp_code": 550,
        "smtp_message": f"5.7.1 refused: you are {REDACTED}, are you not?",
    }


# Twilio


@pytest.mark.parametrize("form", sorted(forms(TWILIO_TOKEN, f"{ACCOUNT_SID}:{TWILIO_TOKEN}")))
async def test_any_form_of_the_twilio_token_in_an_answer_is_masked(form: str) -> None:
    async with FakeTwilioApi(auth_token=TWILIO_TOKEN) as api:
        api.force(ForcedAnswer(400, twilio_error(400, 20003, f"you sent {form}")))
        provider = TwilioSmsProvider(SmsSettings(**api.settings()))
        try:
            error = await _failure(provider, _message(phone="+15005550006"))
        finally:
            await provider.close()

    assert_no_form(error, forms(TWILIO_TOKEN, f"{ACCOUNT_SID}:{TWILIO_TOKEN}"))
    assert error.response is not None
    assert error.response["message"] == f"you sent {REDACTED}"


# Telegram


@pytest.mark.parametrize("form", sorted(forms(TOKEN) | {quote(TOKEN, safe=":")}))
async def test_any_form_of_the_bot_token_in_an_answer_is_masked(form: str) -> None:
    async with FakeTelegramApi(token=TOKEN, chats={1001}) as api:
        api.force(ForcedAnswer(400, {"ok": False, "error_code": 400, "description": f"bad {form}"}))
        provider = TelegramProvider(
            TelegramSettings(api_url=api.url, bot_token=SecretStr(TOKEN), timeout=5)
        )
        try:
            error = await _failure(provider, _message(telegram_chat_id="1001"))
        finally:
            await provider.close()

    assert_no_form(error, forms(TOKEN) | {quote(TOKEN, safe=":")})
    assert error.response is not None
    assert error.response["description"] == f"bad {REDACTED}"
