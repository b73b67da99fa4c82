"""Request bodies of the HTTP API, validated by pydantic, and their JSON answers."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifyd.addresses import SPECIAL_USE_PATTERN, deliverable_address
from notifyd.domain import (
    BIGINT_MAX,
    CHANNELS,
    DEFAULT_CHANNELS,
    EARLIEST_TIMESTAMP,
    INVISIBLE_RANGES,
    LINE_BREAKS,
    MAX_MESSAGE_LENGTH,
    MAX_PRIORITY,
    MAX_SUBJECT_LENGTH,
    MIN_PRIORITY,
    TIMESTAMP_LIMIT,
    UNSTORABLE_TEXT,
    Channel,
    NewNotification,
    Notification,
    NotificationFilter,
    Status,
    has_visible_text,
)

# The rule of `has_visible_text` as the OpenAPI document states it: escaped, and over the
# Basic Multilingual Plane. ECMA-262 patterns without the `u` flag see an astral character
# as two halves; the three astral ranges of invisible characters (format controls, tags)
# are left out, so the document takes a message made of those alone, which the API refuses.
VISIBLE_CHARACTER_PATTERN = (
    "^[^\\u0000]*[^"
    + "".join(f"\\u{first:04x}-\\u{last:04x}" for first, last in INVISIBLE_RANGES if last <= 0xFFFF)
    + "][^\\u0000]*$"
)
# A subject's rule (no line break, no NUL) as the OpenAPI document states it, escaped.
SINGLE_LINE_PATTERN = (
    "^[^" + "".join(f"\\u{ord(c):04x}" for c in sorted(LINE_BREAKS | {"\x00"})) + "]*$"
)
DEFAULT_PAGE_SIZE = 50
# The last instant a timestamp may be stored at is this much before TIMESTAMP_LIMIT.
LAST_STEP = timedelta(microseconds=1)
MAX_PAGE_SIZE = 200

_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CHAT_ID = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")
# The id of the last item of the page before (keyset pagination: items with lower ids).
_CURSOR = re.compile(r"^[0-9]{1,19}$")
# A number in a query string: ASCII digits only (no sign, point, exponent or underscore).
_DIGITS = re.compile(r"[0-9]{1,19}")


def _default_channels() -> list[Channel]:
    return list(DEFAULT_CHANNELS)


def storable_text(value: str) -> str:
    """Refuse what PostgreSQL text cannot hold (`UNSTORABLE_TEXT`): NUL and unpaired
    surrogates."""
    if UNSTORABLE_TEXT.search(value):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        raise ValueError("must be valid Unicode (no unpaired surrogates)")
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits a deployment may set below the ones the database enforces.

    Passed to validation as its context: `NotifyRequest.model_validate(data, context=...)`.
    """

    max_message_length: int = MAX_MESSAGE_LENGTH
    max_subject_bytes: int = MAX_SUBJECT_LENGTH


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    return context if isinstance(context, Limits) else Limits()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _integral(value: object) -> object:
    """1.0 is the number 1 in JSON (and to the OpenAPI document's "integer"); 1.5 is not."""
    # Beyond 2**53 a float is no longer exactly the integer it was written as.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


# After a field's bounds, for an integer as JSON has it: 7 or 7.0, never "7" or true. (Put
# before the bounds, it would hide them from the JSON schema.)
INTEGRAL = BeforeValidator(_integral)


class NotifyRequest(_Body):
    """Body of `POST /api/notify/`."""

    user_id: Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX), INTEGRAL]
    message: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=MAX_MESSAGE_LENGTH,
            description=(
                "Not blank: at least one visible character (whitespace, control characters"
                " and invisible ones such as U+200B do not count); no NUL characters."
            ),
            json_schema_extra={"pattern": VISIBLE_CHARACTER_PATTERN},
        ),
    ]
    subject: Annotated[
        StrictStr,
        Field(
            max_length=MAX_SUBJECT_LENGTH,
            description=f"One line, at most {MAX_SUBJECT_LENGTH} bytes in UTF-8.",
            json_schema_extra={"pattern": SINGLE_LINE_PATTERN},
        ),
    ] = ""
    channels: Annotated[
        list[Channel],
        Field(
            min_length=1,
            # Known channels without repeats: no longer list can be valid.
            max_length=len(CHANNELS),
            description="Delivery order, without repeats.",
            json_schema_extra={"uniqueItems": True},
        ),
    ] = Field(default_factory=_default_channels)
    send_at: Annotated[
        AwareDatetime | None,
        Field(
            description=(
                "Not delivered before then. A time before 1970 is due at once; one from"
                " the year 3000 on is taken as 2999-12-31T23:59:59.999999Z."
            )
        ),
    ] = None
    priority: Annotated[StrictInt, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY), INTEGRAL] = 0

    @field_validator("send_at", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        # pydantic would also take a number as a Unix time; a date is only ever written out.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date and time with an offset, as a string")
        return value

    @field_validator("send_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        # Any date-time is a time to send at: one before 1970 (the first the database
        # stores) is due at once, as any past one is, and one from the year 3000 on, or
        # past the last instant Python holds in UTC, is never in practice, as the last
        # stored instant is. The OpenAPI document cannot state a range of dates.
        if value is None:
            return None
        try:
            instant = in_utc(value)
        except ValueError:
            return TIMESTAMP_LIMIT - LAST_STEP if value.year > 1 else EARLIEST_TIMESTAMP
        if instant < EARLIEST_TIMESTAMP:
            return EARLIEST_TIMESTAMP
        if instant >= TIMESTAMP_LIMIT:
            return TIMESTAMP_LIMIT - LAST_STEP
        return value

    def to_new(self) -> NewNotification:
        return NewNotification(
            user_id=self.user_id,
            message=self.message,
            subject=self.subject,
            channels=tuple(self.channels),
            send_at=self.send_at,
            priority=self.priority,
        )

    @field_validator("message")
    @classmethod
    def _message(cls, value: str, info: ValidationInfo) -> str:
        storable_text(value)
        if not has_visible_text(value):
            # Whitespace, control and invisible characters (U+200B...) do not count.
            raise ValueError("must not be blank")
        limit = _limits(info).max_message_length
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        storable_text(value)
        if LINE_BREAKS.intersection(value):
            # Not only CR and LF: the e-mail channel refuses every line break, and would
            # fail the notification's e-mail for good after it had been accepted.
            raise ValueError(
                "must be a single line (no CR, LF or other line break: VT, FF, NEL, U+001C"
                " to U+001E, U+2028, U+2029)"
            )
        limit = _limits(info).max_subject_bytes
        if len(value.encode("utf-8")) > limit:
            raise ValueError(f"must be at most {limit} bytes in UTF-8")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[Channel]) -> list[Channel]:
        duplicates = sorted(c for c, n in Counter(value).items() if n > 1)
        if duplicates:
            raise ValueError(f"must not repeat a channel (repeated: {', '.join(duplicates)})")
        return value


def _documented(**schema: Any) -> Any:
    """What the OpenAPI document says of a field its validator checks (the same rule)."""
    return Field(json_schema_extra=schema)


class _UserFields(_Body):
    email: (
        Annotated[
            StrictStr,
            _documented(format="email", maxLength=254, pattern=SPECIAL_USE_PATTERN),
        ]
        | None
    ) = None
    phone: Annotated[StrictStr, _documented(pattern=_PHONE.pattern)] | None = None
    # As a JSON number, what the body parser reads as an integer (wider: a float, refused).
    telegram_chat_id: (
        Annotated[StrictInt, _documented(minimum=-(2**63), maximum=2**64 - 1), INTEGRAL]
        | Annotated[StrictStr, _documented(pattern=_CHAT_ID.pattern)]
        | None
    ) = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        storable_text(value)
        try:
            deliverable_address(value)
        except ValueError as exc:
            raise ValueError(f"must be an e-mail address like name@example.com: {exc}") from None
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _PHONE.fullmatch(value):
            raise ValueError("must be an E.164 phone number like +15551234567")
        return value

    @field_validator("telegram_chat_id")
    @classmethod
    def _chat_id(cls, value: int | str | None) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not _CHAT_ID.fullmatch(text):
            raise ValueError("must be a Telegram chat id (an integer) or @channelusername")
        return text

    def contacts(self) -> dict[str, str | None]:
        """The fields the client sent, normalised (chat ids as text)."""
        return {
            name: (None if value is None else str(value))
            for name, value in self.model_dump(include=self.model_fields_set).items()
        }


class UserCreate(_UserFields):
    """Body of `POST /api/users/`."""


class UserUpdate(_UserFields):
    """Body of `PATCH /api/users/{id}`: only the fields sent change; null clears one."""

    # The rule of `_not_empty`, as the document states it.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one of email, phone, telegram_chat_id")
        return self


class NotificationQuery(BaseModel):
    """Query string of `GET /api/notifications`: filters, page size and cursor.

    Values arrive as text, so numbers and dates are parsed from it (not strict types).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status | None = None
    user_id: Annotated[int, Field(ge=1, le=BIGINT_MAX)] | None = None
    channel: Channel | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE
    cursor: Annotated[str, _documented(pattern=_CURSOR.pattern)] | None = None

    @field_validator("user_id", "limit", mode="before")
    @classmethod
    def _decimal(cls, value: object) -> object:
        # pydantic would also read "5.0", "+5" and "5_0" (as 50); the document says integer.
        if isinstance(value, str) and not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written in digits, like 50")
        return value

    @field_validator("created_after", "created_before", mode="before")
    @classmethod
    def _iso_datetime(cls, value: object) -> object:
        # pydantic would also read "0.5" as a Unix time; only ISO 8601 is documented.
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    "must be an ISO 8601 date and time with an offset, like 2026-11-30T12:00:00Z"
                ) from None
        return value

    @field_validator("created_after", "created_before")
    @classmethod
    def _representable(cls, value: datetime | None) -> datetime | None:
        # A bound before the first instant Python holds in UTC (0001-01-01T00:00:00+01:00)
        # or after the last filters as that instant would: everything, or nothing.
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    def to_filter(self, user_id: int | None = None) -> NotificationFilter:
        return NotificationFilter(
            status=self.status,
            user_id=user_id if user_id is not None else self.user_id,
            channel=self.channel,
            created_after=self.created_after,
            created_before=self.created_before,
            before_id=None if self.cursor is None else decode_cursor(self.cursor),
        )


def in_utc(value: datetime) -> datetime:
    """`value` in UTC, or a ValueError when Python's datetime has no such instant there."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "must be an instant from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
        ) from None


def encode_cursor(last_id: int) -> str:
    """The cursor for the page after the row `last_id`: that id, in decimal."""
    return str(last_id)


def decode_cursor(cursor: str) -> int | None:
    """The id the next page starts below; None for one beyond any id (no bound at all)."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError("is not a cursor from a previous page (an id, in decimal)")
    last_id = int(cursor)
    return last_id if last_id <= BIGINT_MAX else None


def next_cursor(notifications: list[Notification], limit: int) -> str | None:
    """The cursor of the page after these (`limit` of them shown), if one follows."""
    page = notifications[:limit]
    return encode_cursor(page[-1].id) if len(notifications) > limit and page else None
