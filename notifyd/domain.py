"""notifyd's vocabulary and the values its layers pass to each other.

Channels and statuses are spelled once, here, as `StrEnum`s: the request models, the
OpenAPI document, the CLI, the metrics and the store use these, and a test holds the
database's checks to the same names. Nothing here imports another part of notifyd.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final


class Channel(StrEnum):
    """A way to reach a user; the members' order is the default fallback order."""

    EMAIL = "email"
    SMS = "sms"
    TELEGRAM = "telegram"


# Known channels in the default fallback order (the database's notifyd.known_channels()).
CHANNELS: Final = tuple(Channel)
DEFAULT_CHANNELS: Final = CHANNELS


class Status(StrEnum):
    """Where a notification stands. `processing` is the in-flight state of a leased row."""

    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    FAILED = "failed"


# Statuses a notification never leaves.
FINAL_STATUSES: Final = frozenset({Status.SENT, Status.FAILED})


class AttemptStatus(StrEnum):
    """How one attempt on one channel ended."""

    SUCCESS = "success"
    FAILED = "failed"
    # The vendor asked to slow down: a pause, which does not count as an attempt.
    THROTTLED = "throttled"


# Limits the API and the database both enforce.
MIN_PRIORITY: Final = -100
MAX_PRIORITY: Final = 100
MAX_SUBJECT_LENGTH: Final = 998  # bytes of UTF-8: RFC 5322's line limit
MAX_MESSAGE_LENGTH: Final = 65536  # characters
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
BIGINT_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    user_id: int
    subject: str
    message: str
    channels: tuple[Channel, ...]
    status: Status
    send_at: datetime | None
    priority: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueueing answers, and what a replayed idempotent request gets again."""

    id: int
    status: Status
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    """Which notifications a listing shows; None means any."""

    status: Status | None = None
    user_id: int | None = None
    # Notifications whose channel list includes this one.
    channel: Channel | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # Keyset pagination: only ids below this one (the last of the previous page).
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to enqueue."""

    user_id: int
    message: str
    subject: str = ""
    channels: tuple[Channel, ...] = DEFAULT_CHANNELS
    send_at: datetime | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """An Idempotency-Key with the fingerprint of the request it came with."""

    # Whose key: the caller's id ("" when the API is open).
    scope: str
    key: str
    fingerprint: bytes
    # Older keys are forgotten: the same key then starts over.
    keep_seconds: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the attempt log holds it."""

    id: int
    notification_id: int
    channel: str
    attempt: int
    status: str
    error: str | None
    transient: bool | None
    provider_response: Any
    started_at: datetime
    finished_at: datetime


# Not frozen: one is made per attempt, and a frozen dataclass takes several times as long
# to build.
@dataclass(slots=True)
class AttemptRecord:
    """One finished attempt, to be written to the attempt log."""

    notification_id: int
    channel: Channel
    attempt: int
    status: AttemptStatus
    error: str | None
    transient: bool | None
    provider_response: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class Recipient:
    """The contacts of the user a notification is for."""

    user_id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None

    def contact(self, channel: Channel) -> str | None:
        """The address, number or chat id that `channel` delivers to."""
        if channel is Channel.EMAIL:
            return self.email
        if channel is Channel.SMS:
            return self.phone
        return self.telegram_chat_id


@dataclass(frozen=True, slots=True)
class ClaimedNotification:
    """A notification this instance holds the lease on, with its user's contacts."""

    id: int
    recipient: Recipient
    subject: str
    message: str
    channels: tuple[Channel, ...]
    created_at: datetime
    # Above 1 when an earlier lease expired: delivery resumes from the attempt log.
    claims: int
    # Higher goes first, in the claim and in the channels' inboxes.
    priority: int = 0
    # Channels on which a vendor said the user's contact can never be reached.
    suppressed: frozenset[Channel] = frozenset()


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to deliver on one channel."""

    notification_id: int
    recipient: Recipient
    subject: str
    body: str

    def as_text(self) -> str:
        """Subject and body as one plain text, for channels without a subject line."""
        if self.subject:
            return f"{self.subject}\n\n{self.body}"
        return self.body
