"""The answers of the HTTP API (and of the CLI's --json): models that make each answer.

The same models make the answers and the OpenAPI document's schemas of them, so the
document cannot promise a field the API does not send. Timestamps are ISO 8601 with
microseconds and the UTC offset, always the same shape.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema, model_validator

from notifyd import domain
from notifyd.domain import AttemptStatus, Channel, Status


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 with microseconds and the UTC offset, always the same shape."""
    return None if value is None else value.isoformat(timespec="microseconds")


Timestamp = Annotated[
    datetime,
    PlainSerializer(timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    def json_dict(self) -> dict[str, Any]:
        """The answer as JSON-able values."""
        return self.model_dump(mode="json")


class Enqueued(_Answer):
    """Answer of POST /api/notify/."""

    id: int
    status: Status
    created_at: Timestamp


class AttemptOut(_Answer):
    id: int
    # The delivery round it belongs to: 1, then one more for each retry.
    round: int
    channel: Channel
    attempt: int
    status: AttemptStatus
    error: str | None
    # Whatever the vendor answered, as stored: usually an object, but another application
    # may have written any JSON there, and the answer shows it as it is.
    provider_response: Annotated[Any, WithJsonSchema({"type": ["object", "null"]})]
    started_at: Timestamp
    finished_at: Timestamp
    duration_ms: float

    @model_validator(mode="before")
    @classmethod
    def _from_attempt(cls, data: Any) -> Any:
        # The log keeps when an attempt started and finished; the answer says how long.
        if isinstance(data, domain.Attempt):
            took = (data.finished_at - data.started_at).total_seconds()
            names = [name for name in cls.model_fields if name != "duration_ms"]
            shown = {name: getattr(data, name) for name in names}
            return {**shown, "duration_ms": round(took * 1000, 3)}
        return data


class NotificationSummary(_Answer):
    """A notification as listed (without its attempts)."""

    id: int
    user_id: int
    subject: str
    message: str
    channels: list[Channel]
    status: Status
    send_at: Timestamp | None
    priority: int
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None
    # 1, then one more for each retry.
    round: int
    # When a cancel was asked for while it was being delivered: it ends `cancelled`, or
    # `sent` if the attempt under way succeeds.
    cancel_requested_at: Timestamp | None


class NotificationOut(NotificationSummary):
    """A notification with its attempts, oldest first."""

    attempts: list[AttemptOut]


class NotificationPage(_Answer):
    items: list[NotificationSummary]
    next_cursor: str | None


class SuppressionOut(_Answer):
    """A contact a vendor said can never be reached on `channel`: skipped until lifted."""

    channel: Channel
    reason: str
    since: Timestamp


class UserOut(_Answer):
    id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None
    created_at: Timestamp
    updated_at: Timestamp
    # Lifted when the contact changes, or by DELETE /api/users/{id}/suppressions/{channel}.
    suppressions: list[SuppressionOut]


class FieldError(_Answer):
    field: str
    message: str


class Problem(_Answer):
    """RFC 9457 problem details; `errors` names each offending field."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class Health(_Answer):
    status: Literal["ok"]


class Readiness(_Answer):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields, one level deep (nested values as they are)."""
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def enqueued_json(enqueued: domain.Enqueued) -> dict[str, Any]:
    return Enqueued.model_validate(enqueued).json_dict()


def user_json(user: domain.User) -> dict[str, Any]:
    return UserOut.model_validate(user).json_dict()


def notification_json(
    notification: domain.Notification, attempts: list[domain.Attempt] | None = None
) -> dict[str, Any]:
    """A notification; with its attempts when given (the list view leaves them out)."""
    if attempts is None:
        return NotificationSummary.model_validate(notification).json_dict()
    return NotificationOut.model_validate(
        {**_fields(notification), "attempts": attempts}
    ).json_dict()


def notification_page(
    notifications: list[domain.Notification], limit: int, next_cursor: str | None
) -> dict[str, Any]:
    """One page of notifications (without attempts), newest first, and the next cursor."""
    return NotificationPage.model_validate(
        {"items": notifications[:limit], "next_cursor": next_cursor}
    ).json_dict()
