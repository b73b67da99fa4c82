"""Request bodies of the HTTP API, validated by pydantic, and their JSON answers."""

from __future__ import annotations

import base64
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifyd.addresses import deliverable_address
from notifyd.domain import (
    BIGINT_MAX,
    CHANNELS,
    DEFAULT_CHANNELS,
    MAX_MESSAGE_LENGTH,
    MAX_PRIORITY,
    MAX_SUBJECT_LENGTH,
    MIN_PRIORITY,
    VISIBLE_CHARACTER,
    Attempt,
    Channel,
    Enqueued,
    NewNotification,
    Notification,
    NotificationFilter,
    Status,
    User,
    has_visible_text,
    timestamp_in_range,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CHAT_ID = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")


def _default_channels() -> list[Channel]:
    return list(DEFAULT_CHANNELS)


def storable_text(value: str) -> str:
    """Refuse what PostgreSQL text cannot hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
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


class NotifyRequest(_Body):
    """Body of `POST /api/notify/`."""

    user_id: Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
    message: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=MAX_MESSAGE_LENGTH,
            description=(
                "Not blank: at least one visible character (whitespace, control characters"
                " and invisible ones such as U+200B do not count); no NUL characters."
            ),
            json_schema_extra={"pattern": VISIBLE_CHARACTER},
        ),
    ]
    subject: Annotated[
        StrictStr,
        Field(
            max_length=MAX_SUBJECT_LENGTH,
            description=f"One line, at most {MAX_SUBJECT_LENGTH} bytes in UTF-8.",
            json_schema_extra={"pattern": r"^[^\r\n]*$"},
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
        Field(description="From 1970-01-01T00:00:00Z to before 3000-01-01T00:00:00Z."),
    ] = None
    priority: Annotated[StrictInt, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = 0

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
        # The database's range (notifications_send_at_in_range). Checked in UTC: an
        # instant like 9999-12-31T23:30:00-01:00 is valid ISO 8601 but past the last one
        # Python can hold there.
        if value is None:
            return None
        try:
            fits = timestamp_in_range(in_utc(value))
        except ValueError:
            fits = False
        if not fits:
            raise ValueError("must be from 1970-01-01T00:00:00Z to before 3000-01-01T00:00:00Z")
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
        if "\r" in value or "\n" in value:
            raise ValueError("must be a single line (no CR or LF)")
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


class _UserFields(_Body):
    email: StrictStr | None = None
    phone: StrictStr | None = None
    telegram_chat_id: StrictInt | StrictStr | None = None

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
    cursor: str | None = None

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
    def _instant(cls, value: datetime | None) -> datetime | None:
        # 0001-01-01T00:00:00+14:00 is valid ISO 8601, and before the first instant Python
        # holds in UTC, which is how it is sent to the database (9999-12-31T23:59:59-14:00
        # is past the last). Any instant that is one is a fine filter, even out of the
        # range stored timestamps have.
        if value is not None:
            in_utc(value)
        return value

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
    """An opaque cursor for the page after the row `last_id`."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        last_id = int(value)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("is not a cursor from a previous page") from None
    if kind != "id" or not 1 <= last_id <= BIGINT_MAX:
        raise ValueError("is not a cursor from a previous page")
    return last_id


def notification_page(notifications: list[Notification], limit: int) -> dict[str, Any]:
    """One page of notifications (without attempts), newest first, and the next cursor."""
    page = notifications[:limit]
    more = len(notifications) > limit
    return {
        "items": [notification_json(n) for n in page],
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    }


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 with microseconds and the UTC offset, always the same shape."""
    return None if value is None else value.isoformat(timespec="microseconds")


def enqueued_json(enqueued: Enqueued) -> dict[str, Any]:
    return {
        "id": enqueued.id,
        "status": enqueued.status,
        "created_at": timestamp(enqueued.created_at),
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "channel": attempt.channel,
        "attempt": attempt.attempt,
        "status": attempt.status,
        "error": attempt.error,
        "provider_response": attempt.provider_response,
        "started_at": timestamp(attempt.started_at),
        "finished_at": timestamp(attempt.finished_at),
        "duration_ms": round((attempt.finished_at - attempt.started_at).total_seconds() * 1000, 3),
    }


def notification_json(
    notification: Notification, attempts: list[Attempt] | None = None
) -> dict[str, Any]:
    """A notification; with its attempts when given (the list view leaves them out)."""
    data = {
        "id": notification.id,
        "user_id": notification.user_id,
        "subject": notification.subject,
        "message": notification.message,
        "channels": list(notification.channels),
        "status": notification.status,
        "send_at": timestamp(notification.send_at),
        "priority": notification.priority,
        "created_at": timestamp(notification.created_at),
        "updated_at": timestamp(notification.updated_at),
        "finished_at": timestamp(notification.finished_at),
    }
    if attempts is not None:
        data["attempts"] = [attempt_json(a) for a in attempts]
    return data


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "phone": user.phone,
        "telegram_chat_id": user.telegram_chat_id,
        "created_at": timestamp(user.created_at),
        "updated_at": timestamp(user.updated_at),
    }
