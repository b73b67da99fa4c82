"""SMS: the stub, which logs instead of sending, and what every SMS provider checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.logs import get_logger, info_enabled
from notifyd.providers.base import Provider

if TYPE_CHECKING:
    from notifyd.channel_settings import SmsSettings

log = get_logger(__name__)


class StubSmsProvider(Provider):
    """Pretends to send: logs `sms_stub_sent` and reports the message as accepted.

    `fail_always` makes every attempt fail transiently, to exercise retries and fallback.
    """

    channel = Channel.SMS

    def __init__(self, settings: SmsSettings) -> None:
        self._settings = settings

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Accept the message without sending anything."""
        phone = sms_recipient(message, self._settings)
        if info_enabled():  # a line per message: not even built when not written
            log.info(
                "sms_stub_sent",
                notification_id=message.notification_id,
                phone=mask_phone(phone),
                length=len(message.as_text()),
            )
        return {"provider": "stub", "status": "accepted", "to": phone}


def sms_recipient(message: OutgoingMessage, settings: SmsSettings) -> str:
    """The phone number to send `message` to, whichever provider sends it.

    A user without one is a permanent failure; `fail_always` fails every attempt
    transiently, to exercise retries and fallback.
    """
    phone = message.recipient.phone
    if not phone:
        raise PermanentProviderError("user has no phone number")
    if settings.fail_always:
        raise TransientProviderError("SMS_FAIL_ALWAYS is set")
    return phone


def mask_phone(phone: str) -> str:
    """The phone number with all but its last four digits hidden, for logs."""
    digits = phone.removeprefix("+")
    if not digits.isdigit():
        digits = "".join(c for c in phone if c.isdigit())
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]
