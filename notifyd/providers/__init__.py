"""Delivery providers, one module per vendor, behind the interface in `base`."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from notifyd.providers.base import OutgoingMessage, Provider, Recipient
from notifyd.providers.email import EmailProvider
from notifyd.providers.sms import StubSmsProvider
from notifyd.providers.telegram import TelegramProvider
from notifyd.providers.twilio import TwilioSmsProvider

if TYPE_CHECKING:
    from notifyd.config import ChannelsSettings, SmsSettings

__all__ = ["OutgoingMessage", "Provider", "Recipient", "build_providers"]


def build_providers(channels: ChannelsSettings) -> dict[str, Provider]:
    """One provider per channel, keyed by channel name; none is started yet."""
    return {
        "email": EmailProvider(channels.email),
        "sms": _sms_provider(channels.sms),
        "telegram": TelegramProvider(channels.telegram),
    }


def _sms_provider(settings: SmsSettings) -> Provider:
    if settings.provider == "stub":
        return StubSmsProvider(settings)
    if settings.provider == "twilio":
        return TwilioSmsProvider(settings)
    # `provider` is a Literal: adding a vendor there without a branch here fails mypy.
    assert_never(settings.provider)
