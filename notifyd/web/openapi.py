"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models it validates with.

Request bodies and query strings come from the models in `schemas.py` that validate them
(patterns included: each is the regular expression its validator uses); answers from
`answers.py`, which a test holds the JSON builders of `schemas.py` to. Every status an
operation can answer is listed, with the headers that come with it (the pieces they are
built from are in `openapi_parts.py`). Nothing here is a hand-kept copy of a rule.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from notifyd import __version__
from notifyd.domain import CHANNELS
from notifyd.web.answers import (
    AttemptOut,
    Enqueued,
    FieldError,
    Health,
    NotificationOut,
    NotificationPage,
    NotificationSummary,
    Problem,
    Readiness,
    SuppressionOut,
    UserOut,
)
from notifyd.web.openapi_parts import (
    API_ERRORS,
    BODY_ERRORS,
    IDEMPOTENCY_KEY,
    PROBE_ERRORS,
    REF,
    WRITE_ERRORS,
    error_answers,
    header,
    id_parameter,
    json_answer,
    json_body,
    link,
    query_parameters,
    ref,
)
from notifyd.web.problems import PROBLEM_CONTENT_TYPE
from notifyd.web.schemas import (
    NotificationQuery,
    NotifyRequest,
    UserCreate,
    UserUpdate,
)

__all__ = [
    "AttemptOut",
    "Enqueued",
    "FieldError",
    "Health",
    "NotificationOut",
    "NotificationPage",
    "NotificationSummary",
    "Problem",
    "Readiness",
    "SuppressionOut",
    "UserOut",
    "openapi_document",
]

_MODELS: list[type[BaseModel]] = [
    NotifyRequest,
    UserCreate,
    UserUpdate,
    Enqueued,
    AttemptOut,
    NotificationSummary,
    NotificationOut,
    NotificationPage,
    SuppressionOut,
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


def _paths() -> dict[str, Any]:
    by_user_id = {"id": "$response.body#/id"}
    created_user_links = {
        "GetUser": link("getUser", "The user just created.", **by_user_id),
        "UpdateUser": link("updateUser", "Change the user just created.", **by_user_id),
        "ListUserNotifications": link("listUserNotifications", "Its notifications.", **by_user_id),
        "Notify": link(
            "notify",
            "Send the user just created a notification.",
            requestBody={"user_id": "$response.body#/id"},
        ),
    }
    listing: dict[str, Any] = {
        "parameters": query_parameters(NotificationQuery),
        "responses": {
            "200": json_answer(NotificationPage, "A page, newest first."),
            **error_answers(*API_ERRORS),
        },
    }
    return {
        "/api/notify/": {
            "post": {
                "operationId": "notify",
                "summary": "Enqueue a notification",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": json_body(NotifyRequest),
                "responses": {
                    "200": {
                        **json_answer(Enqueued, "Enqueued (or the first answer, for a replay)."),
                        "headers": {
                            "Idempotent-Replayed": header(
                                "Sent on a replay of an Idempotency-Key.",
                                required=False,
                                enum=["true"],
                            )
                        },
                        "links": {
                            "GetNotification": link(
                                "getNotification", "The notification.", id="$response.body#/id"
                            )
                        },
                    },
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, *BODY_ERRORS),
                },
            }
        },
        "/api/notifications": {
            "get": {"operationId": "listNotifications", "summary": "List notifications", **listing}
        },
        "/api/notifications/{id}": {
            "get": {
                "operationId": "getNotification",
                "summary": "A notification and its attempts",
                "parameters": [id_parameter("notification")],
                "responses": {
                    "200": {
                        **json_answer(NotificationOut, "The notification."),
                        "links": {
                            "GetUser": link(
                                "getUser", "Whom it is for.", id="$response.body#/user_id"
                            )
                        },
                    },
                    **error_answers(*API_ERRORS, 404),
                },
            }
        },
        "/api/notifications/{id}/cancel": {
            "post": {
                "operationId": "cancelNotification",
                "summary": "Cancel a notification that is not final yet",
                "description": "A pending (or scheduled) notification becomes `cancelled` at "
                "once. One being delivered (`processing`) starts no further attempt: it ends "
                "`cancelled`, or `sent` if the attempt under way succeeds; the answer shows it "
                "still `processing`, with `cancel_requested_at` set. A final one: 409.",
                "parameters": [id_parameter("notification")],
                "responses": {
                    "200": json_answer(NotificationOut, "The notification, as GET answers it."),
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, 404, 409),
                },
            }
        },
        "/api/notifications/{id}/retry": {
            "post": {
                "operationId": "retryNotification",
                "summary": "Send a failed or cancelled notification again",
                "description": "Back to `pending` for a new round, from its first channel; "
                "the attempts of earlier rounds stay, each with its `round`. Any other "
                "status: 409.",
                "parameters": [id_parameter("notification")],
                "responses": {
                    "200": json_answer(NotificationOut, "The notification, as GET answers it."),
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, 404, 409),
                },
            }
        },
        "/api/users/": {
            "post": {
                "operationId": "createUser",
                "summary": "Create a user",
                "requestBody": json_body(UserCreate),
                "responses": {
                    "201": {**json_answer(UserOut, "Created."), "links": created_user_links},
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, *BODY_ERRORS),
                },
            }
        },
        "/api/users/{id}": {
            "get": {
                "operationId": "getUser",
                "summary": "A user",
                "parameters": [id_parameter("user")],
                "responses": {
                    "200": json_answer(UserOut, "The user."),
                    **error_answers(*API_ERRORS, 404),
                },
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Change a user's contacts (null clears one)",
                "parameters": [id_parameter("user")],
                "requestBody": json_body(UserUpdate),
                "responses": {
                    "200": json_answer(UserOut, "The changed user."),
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, *BODY_ERRORS, 404),
                },
            },
        },
        "/api/users/{id}/notifications": {
            "get": {
                "operationId": "listUserNotifications",
                "summary": "A user's notifications",
                **listing,
                "parameters": [id_parameter("user"), *listing["parameters"]],
                "responses": {**listing["responses"], **error_answers(404)},
            }
        },
        "/api/users/{id}/suppressions/{channel}": {
            "delete": {
                "operationId": "liftSuppression",
                "summary": "Lift a suppressed contact: deliveries try that channel again",
                "parameters": [
                    id_parameter("user"),
                    {
                        "name": "channel",
                        "in": "path",
                        "required": True,
                        "description": "The channel whose suppression to lift.",
                        "schema": {"type": "string", "enum": [str(c) for c in CHANNELS]},
                    },
                ],
                "responses": {
                    "204": {"description": "Lifted."},
                    **error_answers(*API_ERRORS, *WRITE_ERRORS, 404),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document of this API.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **error_answers(*API_ERRORS),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [{}],
                "responses": {
                    "200": json_answer(Health, "The process is alive."),
                    **error_answers(*PROBE_ERRORS),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                "security": [{}],
                "responses": {
                    "200": json_answer(Readiness, "Ready to work."),
                    **error_answers(*PROBE_ERRORS),
                    "503": {
                        "description": "Not ready (the failing check says why); or, as a "
                        "problem, too many connections.",
                        "content": {
                            "application/json": {"schema": ref(Readiness)},
                            PROBLEM_CONTENT_TYPE: {"schema": ref(Problem)},
                        },
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "The metrics, in Prometheus' text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **error_answers(*PROBE_ERRORS),
                },
            }
        },
    }
