"""The answers of the HTTP API as models: what the OpenAPI document says each one holds.

The JSON builders of `notifyd.web.schemas` write these answers; a test holds them to these
models, so the document cannot promise a field the API does not send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from notifyd.domain import AttemptStatus, Channel, Status


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Enqueued(_Answer):
    """Answer of POST /api/notify/."""

    id: int
    status: Status
    created_at: datetime


class AttemptOut(_Answer):
    id: int
    channel: Channel
    attempt: int
    status: AttemptStatus
    error: str | None
    provider_response: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float


class NotificationSummary(_Answer):
    """A notification as listed (without its attempts)."""

    id: int
    user_id: int
    subject: str
    message: str
    channels: list[Channel]
    status: Status
    send_at: datetime | None
    priority: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class NotificationOut(NotificationSummary):
    """A notification with its attempts, oldest first."""

    attempts: list[AttemptOut]


class NotificationPage(_Answer):
    items: list[NotificationSummary]
    next_cursor: str | None


class UserOut(_Answer):
    id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None
    created_at: datetime
    updated_at: datetime


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
