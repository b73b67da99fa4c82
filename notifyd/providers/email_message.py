"""The e-mail a notification becomes, and the checks its text passes first.

The recipient must be one deliverable address, the subject must not break lines, and
the Message-ID is the same for every attempt; the header fields are written out by
`mime`, never by `email`'s folder.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

from notifyd.addresses import deliverable_address
from notifyd.domain import LINE_BREAKS, OutgoingMessage
from notifyd.errors import PermanentProviderError
from notifyd.providers import mime


def build(
    message: OutgoingMessage, to: str, from_field: mime.WrittenHeader, sender: str
) -> EmailMessage:
    """The MIME message, its header fields written out by `mime` (`to` is checked).

    `from_field` is the From field `mime.mailbox` wrote for `sender`. Only the body goes
    through `email`'s own machinery, which encodes it as a whole.
    """
    mail = EmailMessage()
    try:
        mail["From"] = from_field
        mail["To"] = mime.plain("To", to)
        mail["Subject"] = mime.unstructured("Subject", message.subject)
        domain = sender.rpartition("@")[2]
        mail["Message-ID"] = mime.plain("Message-ID", message_id(message, to, domain))
        mail["Date"] = mime.plain("Date", format_datetime(datetime.now(UTC)))
        mail.set_content(message.body, charset="utf-8")
    except (ValueError, TypeError, IndexError, HeaderParseError) as exc:
        raise PermanentProviderError(f"cannot build the e-mail: {exc}") from exc
    return mail


def message_id(message: OutgoingMessage, to: str, domain: str) -> str:
    """The same Message-ID for every attempt at one notification, even after a crash.

    Mail systems drop a second copy with a Message-ID they have seen, so a message sent
    twice (an attempt repeated after a crash) reaches the reader once.
    """
    digest = hashlib.sha256(
        "\x00".join((str(message.notification_id), to, message.subject, message.body)).encode()
    ).hexdigest()[:20]
    return f"<notifyd.{message.notification_id}.{digest}@{domain}>"


def refuse_line_breaks(subject: str) -> None:
    """A subject that breaks lines is refused: a reader would see it as several lines.

    (It is written as encoded words, so it cannot add a header field either way.)
    """
    if LINE_BREAKS.intersection(subject):
        raise PermanentProviderError("subject contains a line break (header injection)")


@lru_cache(maxsize=4096)
def recipient(address: str) -> tuple[str | None, str]:
    """(the address to deliver to, "") or (None, why it cannot be used).

    Cached: a user gets many messages, and the check costs tens of microseconds.
    """
    try:
        return deliverable_address(address), ""
    except ValueError as exc:
        return None, str(exc)
