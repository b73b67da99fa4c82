"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models it validates with.

Request bodies and query strings come from the models in `schemas.py` that validate them;
answers from the models below, which a test holds the JSON builders of `schemas.py` to.
Nothing here is a hand-kept copy of a rule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from notifyd import __version__
from notifyd.domain import BIGINT_MAX, MAX_IDEMPOTENCY_KEY_LENGTH, AttemptStatus, Channel, Status
from notifyd.web.schemas import (
    NotificationQuery,
    NotifyRequest,
    UserCreate,
    UserUpdate,
)

REF = "#/components/schemas/{model}"


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


_MODELS: list[type[BaseModel]] = [
    NotifyRequest,
    UserCreate,
    UserUpdate,
    Enqueued,
    AttemptOut,
    NotificationSummary,
    NotificationOut,
    NotificationPage,
    UserOut,
    FieldError,
    Problem,
    Health,
    Readiness,
]


def openapi_document() -> dict[str, Any]:
    """The whole document, as a JSON-able dict."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template=REF
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifyd",
            "version": __version__,
            "description": "Notification delivery over email, SMS and Telegram with fallback.",
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # Open when no api.tokens are configured, bearer tokens otherwise.
        "security": [{}, {"bearer": []}],
        "paths": _paths(),
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(Problem)}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "The body is not a JSON object, or a header is malformed.",
        401: "API tokens are configured and none valid was sent.",
        404: "No such notification or user.",
        413: "The body is too large.",
        415: "The body is not JSON.",
        422: "A field or query parameter breaks a rule; `errors` names it.",
        429: "Over the per-token rate limit.",
        503: "The database is unreachable right now.",
    }
    return {str(status): _problem(descriptions[status]) for status in statuses}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _id_parameter(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    return [
        {"name": name, "in": "query", "required": False, "schema": property_schema}
        for name, property_schema in schema["properties"].items()
    ]


def _paths() -> dict[str, Any]:
    notify = {
        "summary": "Enqueue a notification",
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Replays with the same key and body get the first answer.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
                    "pattern": "^[ -~]+$",
                },
            }
        ],
        "requestBody": _body(NotifyRequest),
        "responses": {
            "200": _json(Enqueued, "Enqueued (or the first answer, for a replay)."),
            **_errors(400, 401, 413, 415, 422, 429, 503),
        },
    }
    listing: dict[str, Any] = {
        "parameters": _query_parameters(NotificationQuery),
        "responses": {
            "200": _json(NotificationPage, "A page, newest first."),
            **_errors(401, 422, 429, 503),
        },
    }
    return {
        "/api/notify/": {"post": notify},
        "/api/notifications": {"get": {"summary": "List notifications", **listing}},
        "/api/notifications/{id}": {
            "get": {
                "summary": "A notification and its attempts",
                "parameters": [_id_parameter("notification")],
                "responses": {
                    "200": _json(NotificationOut, "The notification."),
                    **_errors(401, 404, 429, 503),
                },
            }
        },
        "/api/users/": {
            "post": {
                "summary": "Create a user",
                "requestBody": _body(UserCreate),
                "responses": {
                    "201": _json(UserOut, "Created."),
                    **_errors(400, 401, 413, 415, 422, 429, 503),
                },
            }
        },
        "/api/users/{id}": {
            "get": {
                "summary": "A user",
                "parameters": [_id_parameter("user")],
                "responses": {
                    "200": _json(UserOut, "The user."),
                    **_errors(401, 404, 429, 503),
                },
            },
            "patch": {
                "summary": "Change a user's contacts (null clears one)",
                "parameters": [_id_parameter("user")],
                "requestBody": _body(UserUpdate),
                "responses": {
                    "200": _json(UserOut, "The changed user."),
                    **_errors(400, 401, 404, 413, 415, 422, 429, 503),
                },
            },
        },
        "/api/users/{id}/notifications": {
            "get": {
                "summary": "A user's notifications",
                **listing,
                "parameters": [_id_parameter("user"), *listing["parameters"]],
                "responses": {**listing["responses"], **_errors(404)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [{}],
                "responses": {"200": _json(Health, "The process is alive.")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "security": [{}],
                "responses": {
                    "200": _json(Readiness, "Ready to work."),
                    "503": _json(Readiness, "Not ready; the failing check says why."),
                },
            }
        },
    }
