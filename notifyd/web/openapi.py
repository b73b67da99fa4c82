"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models it validates with.

Request bodies and query strings come from the models in `schemas.py` that validate them
(patterns included: each is the regular expression its validator uses); answers from
`answers.py`, which a test holds the JSON builders of `schemas.py` to. Every status an
operation can answer is listed, with the headers that come with it. Nothing here is a
hand-kept copy of a rule.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from notifyd import __version__
from notifyd.domain import BIGINT_MAX, CHANNELS, MAX_IDEMPOTENCY_KEY_LENGTH
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

REF = "#/components/schemas/{model}"


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


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _header(description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", **schema},
    }


RETRY_AFTER = _header("Seconds to wait before trying again.", pattern="^[0-9]+$")


def _json(
    model: type[BaseModel], description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


# Every status an operation may answer with besides its success, and why. Which ones an
# operation lists depends on what it takes (a body, an id, a query) and where it lives.
_WHY = {
    400: "A malformed request: the body is not a JSON object (or not readable), the query "
    "string or the Host header cannot be read, or a header is malformed.",
    401: "API tokens are configured and no valid one was sent.",
    404: "No such notification or user (or, for a suppression, none on that channel).",
    409: "The notification's status does not allow it: `detail` and `errors` name the status.",
    413: "The body is larger than http.max_body_bytes.",
    415: "The body is not JSON (Content-Type), or its Content-Encoding is not supported.",
    421: "The Host header names a host this server does not answer to (http.allowed_hosts).",
    422: "A field or query parameter breaks a rule, is unknown or is repeated; `errors` names "
    "it. Also an unknown user_id, and an Idempotency-Key reused with another body.",
    429: "Over the per-token rate limit (api.rate_limit).",
    503: "The database is unreachable right now, or the server has too many connections.",
}
_HEADERS = {
    401: {"WWW-Authenticate": _header("The scheme to authenticate with: Bearer.")},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}


def _errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _WHY[status],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref(Problem)}},
        }
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
        answers[str(status)] = answer
    return answers


# What every API operation may answer: a bad request, a token, the Host, the rate, the
# database; and a query string with something it does not take.
_API = (400, 401, 421, 422, 429, 503)
# ...with a body, besides.
_BODY = (413, 415)
# The probes answer any Host, need no token and are not rate-limited.
_PROBE = (400, 422, 503)


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
        {"name": name, "in": "query", "required": False, "schema": _not_null(property_schema)}
        for name, property_schema in schema["properties"].items()
    ]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without its `null` branch: a query string has no null."""
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
        return {**rest, **branches[0]}
    return schema


def _link(operation: str, description: str, **values: Any) -> dict[str, Any]:
    """An OpenAPI link: values of the answer that another operation takes."""
    link: dict[str, Any] = {"operationId": operation, "description": description}
    body = values.pop("requestBody", None)
    if values:
        link["parameters"] = values
    if body is not None:
        link["requestBody"] = body
    return link


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays with the same key and body get the first answer. Printable "
    'ASCII; a quoted form ("...") is taken without its quotes, which must enclose something.',
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
        # No space at either end (HTTP drops it), and not "" (nothing between the quotes).
        "pattern": r'^(?!""$)[!-~](?:[ -~]*[!-~])?$',
    },
}


def _paths() -> dict[str, Any]:
    by_user_id = {"id": "$response.body#/id"}
    created_user_links = {
        "GetUser": _link("getUser", "The user just created.", **by_user_id),
        "UpdateUser": _link("updateUser", "Change the user just created.", **by_user_id),
        "ListUserNotifications": _link("listUserNotifications", "Its notifications.", **by_user_id),
        "Notify": _link(
            "notify",
            "Send the user just created a notification.",
            requestBody={"user_id": "$response.body#/id"},
        ),
    }
    listing: dict[str, Any] = {
        "parameters": _query_parameters(NotificationQuery),
        "responses": {"200": _json(NotificationPage, "A page, newest first."), **_errors(*_API)},
    }
    return {
        "/api/notify/": {
            "post": {
                "operationId": "notify",
                "summary": "Enqueue a notification",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": _body(NotifyRequest),
                "responses": {
                    "200": {
                        **_json(Enqueued, "Enqueued (or the first answer, for a replay)."),
                        "headers": {
                            "Idempotent-Replayed": _header(
                                "Sent on a replay of an Idempotency-Key.",
                                required=False,
                                enum=["true"],
                            )
                        },
                        "links": {
                            "GetNotification": _link(
                                "getNotification", "The notification.", id="$response.body#/id"
                            )
                        },
                    },
                    **_errors(*_API, *_BODY),
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
                "parameters": [_id_parameter("notification")],
                "responses": {
                    "200": {
                        **_json(NotificationOut, "The notification."),
                        "links": {
                            "GetUser": _link(
                                "getUser", "Whom it is for.", id="$response.body#/user_id"
                            )
                        },
                    },
                    **_errors(*_API, 404),
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
                "parameters": [_id_parameter("notification")],
                "responses": {
                    "200": _json(NotificationOut, "The notification, as GET answers it."),
                    **_errors(*_API, 404, 409),
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
                "parameters": [_id_parameter("notification")],
                "responses": {
                    "200": _json(NotificationOut, "The notification, as GET answers it."),
                    **_errors(*_API, 404, 409),
                },
            }
        },
        "/api/users/": {
            "post": {
                "operationId": "createUser",
                "summary": "Create a user",
                "requestBody": _body(UserCreate),
                "responses": {
                    "201": {**_json(UserOut, "Created."), "links": created_user_links},
                    **_errors(*_API, *_BODY),
                },
            }
        },
        "/api/users/{id}": {
            "get": {
                "operationId": "getUser",
                "summary": "A user",
                "parameters": [_id_parameter("user")],
                "responses": {"200": _json(UserOut, "The user."), **_errors(*_API, 404)},
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Change a user's contacts (null clears one)",
                "parameters": [_id_parameter("user")],
                "requestBody": _body(UserUpdate),
                "responses": {
                    "200": _json(UserOut, "The changed user."),
                    **_errors(*_API, *_BODY, 404),
                },
            },
        },
        "/api/users/{id}/notifications": {
            "get": {
                "operationId": "listUserNotifications",
                "summary": "A user's notifications",
                **listing,
                "parameters": [_id_parameter("user"), *listing["parameters"]],
                "responses": {**listing["responses"], **_errors(404)},
            }
        },
        "/api/users/{id}/suppressions/{channel}": {
            "delete": {
                "operationId": "liftSuppression",
                "summary": "Lift a suppressed contact: deliveries try that channel again",
                "parameters": [
                    _id_parameter("user"),
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
                    **_errors(*_API, 404),
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
                    **_errors(*_API),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [{}],
                "responses": {"200": _json(Health, "The process is alive."), **_errors(*_PROBE)},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                "security": [{}],
                "responses": {
                    "200": _json(Readiness, "Ready to work."),
                    **_errors(*_PROBE),
                    "503": {
                        "description": "Not ready (the failing check says why); or, as a "
                        "problem, too many connections.",
                        "content": {
                            "application/json": {"schema": _ref(Readiness)},
                            PROBLEM_CONTENT_TYPE: {"schema": _ref(Problem)},
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
                    **_errors(*_PROBE),
                },
            }
        },
    }
