"""Delivery providers, one module per vendor, behind the interface in `base`."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from notifyd.domain import Channel
from notifyd.providers.base import Provider
from notifyd.providers.email import EmailProvider
from notifyd.providers.sms import StubSmsProvider
from notifyd.providers.telegram import TelegramProvider
from notifyd.providers.twilio import TwilioSmsProvider

if TYPE_CHECKING:
    from notifyd.channel_settings import ChannelsSettings, SmsSettings

__all__ = ["Provider", "build_providers"]


def build_providers(channels: ChannelsSettings) -> dict[Channel, Provider]:
    """One provider per channel, keyed by channel name; none is started yet."""
    return {
        Channel.EMAIL: EmailProvider(channels.email),
        Channel.SMS: _sms_provider(channels.sms),
        Channel.TELEGRAM: TelegramProvider(channels.telegram),
    }


def _sms_provider(settings: SmsSettings) -> Provider:
    if settings.provider == "stub":
        return StubSmsProvider(settings)
    if settings.provider == "twilio":
        return TwilioSmsProvider(settings)
    # `provider` is a Literal: adding a vendor there without a branch here fails mypy.
    assert_never(settings.provider)
