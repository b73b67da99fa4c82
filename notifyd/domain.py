"""notifyd's vocabulary and the values its layers pass to each other.

Channels and statuses are spelled once, here, as `StrEnum`s: the request models, the
OpenAPI document, the CLI, the metrics and the store use these, and a test holds the
database's checks to the same names. Nothing here imports another part of notifyd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    # Taken back before it was sent (POST .../cancel, notifyd.cancel()).
    CANCELLED = "cancelled"


# Statuses a notification leaves only by a retry (`failed` and `cancelled` ones).
FINAL_STATUSES: Final = frozenset({Status.SENT, Status.FAILED, Status.CANCELLED})
# Statuses a retry starts a new round from.
RETRYABLE_STATUSES: Final = frozenset({Status.FAILED, Status.CANCELLED})
# Statuses a cancel applies to.
CANCELLABLE_STATUSES: Final = frozenset({Status.PENDING, Status.PROCESSING})


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
# Everything str.splitlines() breaks a line at: a subject holds none of them (a mail reader,
# or a header generator that folds there, would see several lines).
LINE_BREAKS: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# What a text column cannot hold: NUL (PostgreSQL refuses it) and unpaired surrogates
# (UTF-8 cannot encode them). The API refuses them; what a vendor said is stored with them
# replaced.
UNSTORABLE_TEXT: Final = re.compile("[\x00\ud800-\udfff]")
MAX_MESSAGE_LENGTH: Final = 65536  # characters
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
BIGINT_MAX: Final = 2**63 - 1

# Every stored timestamp lies in [EARLIEST_TIMESTAMP, TIMESTAMP_LIMIT): the database refuses
# others with a named check (`<table>_<column>_in_range`) and the API refuses them first.
# From the Unix epoch, which other applications write for "no time" or "at once" (a
# send_at then is simply due), to before the year 3000: a later date is a typo or a
# "never" sentinel, and the range stays far from the ends of what Python's datetime holds
# (years 1 to 9999), so no arithmetic or time zone conversion on a stored value overflows.
EARLIEST_TIMESTAMP: Final = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_LIMIT: Final = datetime(3000, 1, 1, tzinfo=UTC)
# What a stored instant outside what Python can hold ('infinity', year 10000, a BC date,
# found in a row written before the check existed) is read as: the nearest instant Python
# has, always in UTC.
BEFORE_ALL_TIME: Final = datetime.min.replace(tzinfo=UTC)
AFTER_ALL_TIME: Final = datetime.max.replace(tzinfo=UTC)


def timestamp_in_range(value: datetime) -> bool:
    """Whether the database accepts `value` as a stored timestamp (an aware datetime)."""
    return EARLIEST_TIMESTAMP <= value < TIMESTAMP_LIMIT


_EARLIEST_SECONDS: Final = EARLIEST_TIMESTAMP.timestamp()
_LIMIT_SECONDS: Final = TIMESTAMP_LIMIT.timestamp()


def epoch_in_range(seconds: float) -> bool:
    """`timestamp_in_range` for an instant in seconds since the epoch (False for NaN)."""
    return _EARLIEST_SECONDS <= seconds < _LIMIT_SECONDS


# Characters that show nothing: C0 and C1 controls, every Unicode whitespace (and what
# Python's str.isspace() adds), the Default_Ignorable_Code_Point characters (zero-width
# spaces and joiners, the byte order mark, bidirectional marks, variation selectors, Hangul
# fillers, tags), and the blank Braille pattern. A message made only of these is blank.
# The database's notifyd.check_message() spells out the same ranges.
INVISIBLE_RANGES: Final = (
    (0x0000, 0x0020),
    (0x007F, 0x00A0),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x1680, 0x1680),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x206F),
    (0x2800, 0x2800),
    (0x3000, 0x3000),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# One visible character, as a regular expression with the characters themselves (not
# escapes), so that Python and the OpenAPI document's ECMA-262 patterns read it alike.
VISIBLE_CHARACTER: Final = "[^" + "".join(f"{chr(a)}-{chr(b)}" for a, b in INVISIBLE_RANGES) + "]"
_VISIBLE: Final = re.compile(VISIBLE_CHARACTER)


def has_visible_text(text: str) -> bool:
    """Whether `text` shows anything: it is not blank, nor only invisible characters."""
    return _VISIBLE.search(text) is not None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None
    created_at: datetime
    updated_at: datetime
    # The user's contacts a vendor said can never be reached, by channel.
    suppressions: tuple[Suppression, ...] = ()


@dataclass(frozen=True, slots=True)
class Suppression:
    """A contact a vendor said can never be reached on `channel`, since when and why."""

    channel: Channel
    reason: str
    since: datetime


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
    # 1, and one more for each retry.
    round: int = 1
    # Set when a cancel was asked for while it was being delivered.
    cancel_requested_at: datetime | None = None


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
    # The delivery round it belongs to (1, then one more per retry).
    round: int = 1


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
    # Seconds since the epoch (`time.time()`): one clock call per instant, written as a
    # number the driver encodes in C, and turned into a timestamp by the server.
    started_at: float
    finished_at: float
    round: int = 1


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a batch of attempt writes came to, by notification id."""

    # Not written: the lease is no longer the writer's.
    not_written: set[int]
    # Written, and the notification ended `cancelled`: a cancel was asked for meanwhile.
    cancelled: set[int]
    # Not written yet: still the writer's, but another transaction holds the row locked.
    busy: set[int] = field(default_factory=set)


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
    # When it was created, in seconds since the epoch, as stored: any number a row written
    # by another application holds (see `epoch_in_range`), infinities included.
    created: float
    # Above 1 when an earlier lease expired: delivery resumes from the attempt log.
    claims: int
    # Higher goes first, in the claim and in the channels' inboxes.
    priority: int = 0
    # Channels on which a vendor said the user's contact can never be reached.
    suppressed: frozenset[Channel] = frozenset()
    # The delivery round (1, then one more per retry): its attempts are written with it.
    round: int = 1


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
