"""The stub SMS provider: accepts and logs, or fails on demand."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from notifyd.channel_settings import ChannelsSettings, SmsSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.providers import build_providers
from notifyd.providers.sms import StubSmsProvider, mask_phone

PHONE = "+79991234567"


def _message(phone: str | None = PHONE) -> OutgoingMessage:
    recipient = Recipient(user_id=7, email=None, phone=phone, telegram_chat_id=None)
    return OutgoingMessage(notification_id=42, recipient=recipient, subject="Hi", body="Body")


async def test_accepts_and_reports_the_number() -> None:
    provider = StubSmsProvider(SmsSettings())

    answer = await provider.send(_message())

    assert answer == {"provider": "stub", "status": "accepted", "to": PHONE}


async def test_logs_sms_stub_sent_with_a_masked_number() -> None:
    provider = StubSmsProvider(SmsSettings())

    with capture_logs() as logs:
        await provider.send(_message())

    [entry] = [e for e in logs if e["event"] == "sms_stub_sent"]
    assert entry["notification_id"] == 42
    assert entry["phone"] == "*******4567"
    assert "1234567" not in str(logs)


async def test_missing_phone_is_permanent() -> None:
    provider = StubSmsProvider(SmsSettings())

    with pytest.raises(PermanentProviderError, match="user has no phone number"):
        await provider.send(_message(phone=None))
    with pytest.raises(PermanentProviderError, match="user has no phone number"):
        await provider.send(_message(phone=""))


async def test_fail_always_is_transient_on_every_attempt() -> None:
    provider = StubSmsProvider(SmsSettings(fail_always=True))

    for _ in range(3):
        with capture_logs() as logs, pytest.raises(TransientProviderError) as caught:
            await provider.send(_message())
        assert caught.value.message == "SMS_FAIL_ALWAYS is set"
        assert caught.value.transient
        assert not [e for e in logs if e["event"] == "sms_stub_sent"]


async def test_missing_phone_wins_over_fail_always() -> None:
    # No number cannot be fixed by retrying, whatever the stub is told to do.
    provider = StubSmsProvider(SmsSettings(fail_always=True))

    with pytest.raises(PermanentProviderError):
        await provider.send(_message(phone=None))


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("+7 (999) 123-45-67", "*******4567"), ("1234", "****"), ("12", "**"), ("", "")],
)
def test_mask_phone_keeps_only_the_last_four_digits(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_build_providers_picks_the_stub_and_one_provider_per_channel() -> None:
    providers = build_providers(ChannelsSettings())

    assert set(providers) == {"email", "sms", "telegram"}
    assert isinstance(providers["sms"], StubSmsProvider)
    assert all(provider.channel == name for name, provider in providers.items())
