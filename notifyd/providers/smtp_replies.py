"""What an SMTP server's reply, or a failure to reach it, means for an attempt.

How the server's replies are read (RFC 5321 codes, RFC 3463 enhanced codes):
- `421` (the server is closing the session, often "too many connections") and any 4xx
  with an enhanced code `4.7.x` (`451 4.7.1` rate limited, `450 4.7.x` greylisted) ask to
  slow down: `ThrottledError`. Refused at RCPT (greylisting is per recipient) it pauses
  that address only; anywhere else, the channel. SMTP gives no time: the pause is the
  default one.
- Any other 4xx (`451 4.3.0`), a timeout, a dropped connection: `TransientProviderError`.
- `5.1.1` (no such mailbox) at RCPT or after DATA: `RecipientUnreachableError`, the
  address is suppressed. Any other 5xx: `PermanentProviderError`.

A pure reading: the provider logs and acts on the error it returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal

import aiosmtplib

from notifyd.errors import (
    PermanentProviderError,
    ProviderError,
    RecipientUnreachableError,
    ThrottledError,
    TransientProviderError,
)
from notifyd.providers.base import local_resource_error

# An enhanced status code at the start of a reply's text (RFC 3463): class.subject.detail.
_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
# "Service not available, closing transmission channel": the server limits this client.
SERVICE_CLOSING: Final = 421
# The enhanced codes that say the mailbox does not exist.
NO_SUCH_MAILBOX: Final = frozenset({(5, 1, 1)})

Stage = Literal["rcpt", "message", "session"]


def provider_error(exc: BaseException, scrub: Callable[[str], str]) -> ProviderError:
    """The provider error for a failure of aiosmtplib or the network.

    `scrub` takes the password out of any text a server or the library sent back.
    """
    shortage = local_resource_error("SMTP", exc)
    if shortage is not None:
        return shortage
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return _by_code(first.code, first.message, "recipient refused", "rcpt", scrub)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        stage: Stage = "session"
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            stage = "rcpt"
        elif isinstance(exc, aiosmtplib.SMTPDataError):
            stage = "message"
        return _by_code(exc.code, exc.message, _describe(exc), stage, scrub)
    kind = type(exc).__name__
    text = scrub(str(exc)) or kind
    if isinstance(exc, TimeoutError):
        # SMTPTimeoutError is a TimeoutError too.
        return TransientProviderError(f"SMTP timeout: {text}")
    if isinstance(exc, (ConnectionError, OSError)):
        # Also SMTPConnectError and SMTPServerDisconnected (both ConnectionErrors).
        return TransientProviderError(f"SMTP connection failed: {kind}: {text}")
    # SMTPNotSupported (no STARTTLS, no AUTH, no SMTPUTF8), invalid addresses: only a
    # configuration or data change helps.
    return PermanentProviderError(f"SMTP error: {kind}: {text}")


def _by_code(
    code: int, server_message: str, what: str, stage: Stage, scrub: Callable[[str], str]
) -> ProviderError:
    text = scrub(server_message)
    response = {"smtp_code": code, "smtp_message": text}
    error = f"SMTP {what}: {code} {text}"
    enhanced = enhanced_code(text)
    if code == SERVICE_CLOSING or (400 <= code < 500 and enhanced[:2] == (4, 7)):
        scope: Literal["channel", "recipient"] = (
            "recipient" if stage == "rcpt" and code != SERVICE_CLOSING else "channel"
        )
        return ThrottledError(error, scope=scope, response=response)
    if 500 <= code < 600:
        if stage != "session" and enhanced in NO_SUCH_MAILBOX:
            return RecipientUnreachableError(
                error, reason=f"no such mailbox: {code} {text}"[:200], response=response
            )
        return PermanentProviderError(error, response=response)
    # 4xx by definition; anything else (-1 for a garbled reply) is not a clear refusal.
    return TransientProviderError(error, response=response)


def enhanced_code(text: str) -> tuple[int, ...]:
    """The enhanced status code a reply's text starts with, as numbers; () if none."""
    found = _ENHANCED.match(text)
    return tuple(int(part) for part in found.groups()) if found else ()


def _describe(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "authentication failed"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "sender refused"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return "recipient refused"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message refused"
    return "error"
