"""The `[channels.*]` sections of the configuration: how notifyd reaches each vendor.

The providers read these; the rest of the configuration (`notifyd.config`) holds them
under `channels`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from notifyd.addresses import parse_mailbox


def _http_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


# A vendor API's base URL: http(s) with a host, without a trailing slash.
HttpBaseUrl = Annotated[str, AfterValidator(_http_base_url)]


class Section(BaseModel):
    """A section of the configuration: unknown keys are refused, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ChannelSettings(Section):
    concurrency: int = Field(default=10, ge=1, le=1000)
    timeout: float = Field(default=10.0, gt=0)
    # Messages per second the vendor takes, shared by every instance on the database;
    # 0: no limit.
    rate_limit: float = Field(default=0.0, ge=0, le=100_000)
    # Seconds between two messages to one recipient, across instances; 0: no limit.
    per_recipient_interval: float = Field(default=0.0, ge=0, le=86_400)

    def effective_rate_limit(self) -> float:
        """Messages per second actually applied (a provider may derive its default)."""
        return self.rate_limit


class EmailSettings(_ChannelSettings):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    security: Literal["none", "starttls", "tls"] = "none"
    validate_certs: bool = True
    from_address: str = "webmaster@localhost"
    # Idle connections kept for reuse (0: a new connection per message).
    pool_size: int = Field(default=4, ge=0, le=1000)
    # Seconds an idle connection is kept; below the usual server idle timeouts (60-300 s).
    pool_idle_timeout: float = Field(default=30.0, gt=0)
    # Messages sent over one connection before it is replaced (servers cap it too).
    max_messages_per_connection: int = Field(default=100, ge=1)
    # Seconds after a failed connection during which attempts fail without connecting.
    connect_cooldown: float = Field(default=0.5, ge=0)

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        # `name@host` or `Name <name@host>`; a local host like `localhost` is fine for the
        # sender, which only has to be written safely (the recipients are checked harder).
        parse_mailbox(value)
        return value


_TWILIO_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_TWILIO_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# North American toll-free numbers (800, 833, 844, 855, 866, 877, 888).
_TOLL_FREE = re.compile(r"\+18(00|33|44|55|66|77|88)[0-9]{7}")


class SmsSettings(_ChannelSettings):
    provider: Literal["stub", "twilio"] = "stub"
    # None: by sender, as Twilio queues them (see `effective_rate_limit`).
    rate_limit: float | None = Field(default=None, ge=0, le=100_000)  # type: ignore[assignment]
    # Every attempt fails (transiently), whichever the provider: to exercise fallback.
    fail_always: bool = False
    # Twilio: the account, its auth token, and the sender (a number or a Messaging Service).
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    messaging_service_sid: str = ""
    api_url: HttpBaseUrl = "https://api.twilio.com"

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str) -> str:
        if value and not _TWILIO_ACCOUNT_SID.fullmatch(value):
            raise ValueError('must be a Twilio Account SID ("AC" and 32 hex digits)')
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _messaging_service_sid(cls, value: str) -> str:
        if value and not _TWILIO_SERVICE_SID.fullmatch(value):
            raise ValueError('must be a Twilio Messaging Service SID ("MG" and 32 hex digits)')
        return value

    @field_validator("from_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if value and not _E164.fullmatch(value):
            raise ValueError("must be an E.164 phone number like +15551234567")
        return value

    def effective_rate_limit(self) -> float:
        """`rate_limit` if set; else what the sender takes without Twilio refusing.

        The stub has no vendor. A Messaging Service queues messages at its senders' pace
        itself. A US toll-free number sends 3 message segments a second by default, any
        other number (a long code) 1.
        """
        if self.rate_limit is not None:
            return self.rate_limit
        if self.provider == "stub" or self.messaging_service_sid:
            return 0.0
        if _TOLL_FREE.fullmatch(self.from_number):
            return 3.0
        return 1.0

    @model_validator(mode="after")
    def _twilio_complete(self) -> SmsSettings:
        if self.provider != "twilio":
            return self
        required = 'required when provider = "twilio"'
        missing = [
            (key, required)
            for key, value in (
                ("account_sid", self.account_sid),
                ("auth_token", self.auth_token.get_secret_value()),
            )
            if not value
        ]
        if not self.from_number and not self.messaging_service_sid:
            missing.append(("from_number", f"{required}, unless messaging_service_sid is set"))
        if missing:
            # A ValidationError rather than a ValueError, so that each message names its
            # own key (channels.sms.auth_token) and not only the section.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("twilio_setting_missing", message),
                        loc=(key,),
                        input="",
                    )
                    for key, message in missing
                ],
            )
        return self


class TelegramSettings(_ChannelSettings):
    # Empty: the channel is not configured and every attempt fails permanently.
    bot_token: SecretStr = SecretStr("")
    api_url: HttpBaseUrl = "https://api.telegram.org"
    # Telegram's published limits: about 30 messages a second per bot, one a second per
    # chat, and 20 a minute to a group (a negative chat id).
    rate_limit: float = Field(default=30.0, ge=0, le=100_000)
    per_recipient_interval: float = Field(default=1.0, ge=0, le=86_400)
    group_interval: float = Field(default=3.0, ge=0, le=86_400)


class ChannelsSettings(Section):
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    telegram: TelegramSettings = TelegramSettings()


def channel_settings(
    channels: ChannelsSettings, channel: str
) -> EmailSettings | SmsSettings | TelegramSettings:
    """The settings section of `channel` (`channels.<name>`)."""
    section: EmailSettings | SmsSettings | TelegramSettings = getattr(channels, channel)
    return section
