"""HTTP handlers of the API. Bad input is answered with a 4xx and writes nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from notifyd.domain import (
    BIGINT_MAX,
    CHANNELS,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    Channel,
    Enqueued,
    IdempotencyKey,
    Notification,
    NotificationFilter,
)
from notifyd.errors import (
    ConstraintViolationError,
    IdempotencyKeyReusedError,
    NotFoundError,
    UnknownUserError,
    WrongStatusError,
)
from notifyd.web.answers import enqueued_json, notification_json, notification_page, user_json
from notifyd.web.keys import (
    CALLER,
    DATABASE,
    ENQUEUER,
    IDEMPOTENCY_KEY_SECONDS,
    LIMITS,
    METRICS,
    OPENAPI,
    QUERY,
)
from notifyd.web.openapi import openapi_document
from notifyd.web.problems import ApiError, field_errors
from notifyd.web.query import check_query, takes_query
from notifyd.web.schemas import (
    NotificationQuery,
    NotifyRequest,
    UserCreate,
    UserUpdate,
    next_cursor,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
Body = TypeVar("Body", bound=BaseModel)
Query = TypeVar("Query", bound=BaseModel)

# Database constraint -> the request field it guards, for the rare write that gets past
# validation (the two checks are kept in step, but the database has the last word).
_CONSTRAINT_FIELDS = {
    "notifications_message_not_blank": "message",
    "notifications_message_length": "message",
    "notifications_subject_single_line": "subject",
    "notifications_subject_length": "subject",
    "notifications_channels_valid": "channels",
    "notifications_priority_range": "priority",
    "users_email_format": "email",
    "users_phone_format": "phone",
    "users_telegram_chat_id_format": "telegram_chat_id",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def read_body(request: web.Request, model: type[Body]) -> Body:
    """Parse and validate a JSON object body, or raise the 4xx that explains why not."""
    if request.content_type not in {"application/json"} and not request.content_type.endswith(
        "+json"
    ):
        raise ApiError(
            415,
            "Send the body as JSON with Content-Type: application/json.",
            [{"field": "(body)", "message": f"unsupported content type {request.content_type!r}"}],
        )
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "The request body is empty.", [_body_error("expected a JSON object")])
    try:
        # orjson is strict: invalid UTF-8, lone surrogates, NaN and nesting over 1024 levels
        # are errors.
        data = orjson.loads(raw)
        # A key given twice means different things to different parsers: refuse it.
        json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except (orjson.JSONDecodeError, DuplicateKeyError) as exc:
        raise ApiError(
            400, "The request body is not valid JSON.", [_body_error(str(exc))]
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400, "The request body must be a JSON object.", [_body_error("expected an object")]
        )
    try:
        return model.model_validate(data, context=request.app[LIMITS])
    except ValidationError as exc:
        raise ApiError(422, "The request body is invalid.", field_errors(exc)) from None


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _body_error(message: str) -> dict[str, str]:
    return {"field": "(body)", "message": message}


def path_id(request: web.Request) -> int:
    value = int(request.match_info["id"])
    if not 1 <= value <= BIGINT_MAX:
        raise web.HTTPNotFound()
    return value


def _constraint_error(exc: ConstraintViolationError) -> ApiError:
    field = _CONSTRAINT_FIELDS.get(exc.constraint, "(body)")
    return ApiError(
        422,
        "The request body is invalid.",
        [{"field": field, "message": f"refused by the database ({exc.constraint})"}],
    )


async def notify(request: web.Request) -> web.Response:
    """POST /api/notify/: enqueue a notification (once per Idempotency-Key, if one is sent)."""
    key = _idempotency_key(request)
    body = await read_body(request, NotifyRequest)
    enqueued = request.app[METRICS].enqueued
    try:
        if key is None:
            notification = await request.app[ENQUEUER].enqueue(body.to_new())
            enqueued.inc()
            return json_response(
                enqueued_json(
                    Enqueued(notification.id, notification.status, notification.created_at)
                )
            )
        answer, replayed = await request.app[DATABASE].notifications.enqueue_once(
            IdempotencyKey(
                request.get(CALLER, ""),
                key,
                _fingerprint(body),
                request.app[IDEMPOTENCY_KEY_SECONDS],
            ),
            body.to_new(),
        )
    except UnknownUserError as exc:
        raise ApiError(
            422, "The request body is invalid.", [{"field": "user_id", "message": str(exc)}]
        ) from None
    except ConstraintViolationError as exc:
        raise _constraint_error(exc) from None
    except IdempotencyKeyReusedError as exc:
        # 422, as draft-ietf-httpapi-idempotency-key-header asks for a reused key.
        raise ApiError(
            422,
            "The Idempotency-Key was already used for a different request.",
            [{"field": IDEMPOTENCY_HEADER, "message": str(exc)}],
        ) from None
    response = json_response(enqueued_json(answer))
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        enqueued.inc()
    return response


def _idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header: a plain token or a quoted string, printable ASCII."""
    values = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise _bad_key("send the header once")
    key = values[0]
    # The length as sent, quotes included: what the OpenAPI document can state.
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise _bad_key(f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    if not all(" " <= char <= "~" for char in key):
        raise _bad_key("must be printable ASCII")
    if len(key) >= 2 and key[0] == key[-1] == '"':  # a quoted sf-string (RFC 8941)
        key = key[1:-1]
        if not key:
            raise _bad_key("must not be empty between its quotes")
    return key


def _bad_key(message: str) -> ApiError:
    return ApiError(
        400,
        "The Idempotency-Key header is invalid.",
        [{"field": IDEMPOTENCY_HEADER, "message": message}],
    )


def _fingerprint(body: NotifyRequest) -> bytes:
    """The same request, however its JSON was spelled, has the same fingerprint."""
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


async def get_notification(request: web.Request) -> web.Response:
    """GET /api/notifications/{id}: the notification with its attempts in order."""
    notification_id = path_id(request)
    notifications = request.app[DATABASE].notifications
    try:
        notification = await notifications.get(notification_id)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    attempts = await notifications.attempts([notification_id])
    return json_response(notification_json(notification, attempts[notification_id]))


async def cancel_notification(request: web.Request) -> web.Response:
    """POST /api/notifications/{id}/cancel: take it back, if it is not final yet."""
    return await _lifecycle(request, "cancel")


async def retry_notification(request: web.Request) -> web.Response:
    """POST /api/notifications/{id}/retry: send a failed or cancelled one again."""
    return await _lifecycle(request, "retry")


async def change_lifecycle(request: web.Request, notification_id: int, action: str) -> Notification:
    """Cancel or retry (`action`), counted: for the API and the dashboard's buttons alike."""
    lifecycle = request.config_dict[DATABASE].lifecycle
    metrics = request.config_dict[METRICS]
    if action == "cancel":
        notification = await lifecycle.cancel(notification_id)
        metrics.cancels.inc()
    else:
        notification = await lifecycle.retry(notification_id)
        metrics.retries.inc()
    return notification


async def _lifecycle(request: web.Request, action: str) -> web.Response:
    notification_id = path_id(request)
    try:
        notification = await change_lifecycle(request, notification_id, action)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except WrongStatusError as exc:
        raise ApiError(
            409, str(exc), [{"field": "status", "message": f"is {exc.status}"}]
        ) from None
    attempts = await request.app[DATABASE].notifications.attempts([notification_id])
    return json_response(notification_json(notification, attempts[notification_id]))


@takes_query(*NotificationQuery.model_fields)
async def list_notifications(request: web.Request) -> web.Response:
    """GET /api/notifications: newest first, filtered, a page at a time."""
    query = read_query(request, NotificationQuery)
    return await _page(request, query, query.to_filter())


@takes_query(*NotificationQuery.model_fields)
async def list_user_notifications(request: web.Request) -> web.Response:
    """GET /api/users/{id}/notifications: one user's notifications, newest first."""
    user_id = path_id(request)
    query = read_query(request, NotificationQuery)
    try:
        await request.app[DATABASE].users.get(user_id)
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    return await _page(request, query, query.to_filter(user_id=user_id))


async def _page(
    request: web.Request, query: NotificationQuery, where: NotificationFilter
) -> web.Response:
    # One row more than the page tells whether another page follows.
    found = await request.app[DATABASE].notifications.page(where, query.limit + 1)
    return json_response(notification_page(found, query.limit, next_cursor(found, query.limit)))


def read_query(request: web.Request, model: type[Query]) -> Query:
    """Validate the query's values, or raise a 422 naming each bad parameter.

    Which parameters a route takes, and that each comes once, is checked before the
    route runs (`notifyd.web.query`).
    """
    params = request.get(QUERY)
    if params is None:
        params = check_query(request)
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ApiError(422, "The query string is invalid.", field_errors(exc)) from None


async def create_user(request: web.Request) -> web.Response:
    """POST /api/users/: create a user with their contacts."""
    body = await read_body(request, UserCreate)
    contacts = body.contacts()
    try:
        user = await request.app[DATABASE].users.create(
            contacts.get("email"), contacts.get("phone"), contacts.get("telegram_chat_id")
        )
    except ConstraintViolationError as exc:
        raise _constraint_error(exc) from None
    return json_response(user_json(user), status=201)


async def get_user(request: web.Request) -> web.Response:
    """GET /api/users/{id}."""
    try:
        user = await request.app[DATABASE].users.get(path_id(request))
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    return json_response(user_json(user))


async def update_user(request: web.Request) -> web.Response:
    """PATCH /api/users/{id}: change the contacts sent; null clears one."""
    user_id = path_id(request)
    body = await read_body(request, UserUpdate)
    try:
        user = await request.app[DATABASE].users.update(user_id, body.contacts())
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except ConstraintViolationError as exc:
        raise _constraint_error(exc) from None
    return json_response(user_json(user))


async def lift_suppression(request: web.Request) -> web.Response:
    """DELETE /api/users/{id}/suppressions/{channel}: try that contact again."""
    user_id = path_id(request)
    name = request.match_info["channel"]
    try:
        channel = Channel(name)
    except ValueError:
        known = ", ".join(CHANNELS)
        raise ApiError(
            422,
            "The path names no channel.",
            [{"field": "channel", "message": f"must be one of: {known}"}],
        ) from None
    database = request.app[DATABASE]
    if not await database.users.lift_suppression(user_id, channel):
        try:
            await database.users.get(user_id)
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        raise ApiError(404, f"user {user_id} has no suppression on {channel}")
    return web.Response(status=204)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/openapi.json: the OpenAPI 3.1 document of this API."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def add_routes(app: web.Application) -> None:
    # Ids in ASCII digits only: `\d` matches every script's digits, and `int()` reads them,
    # so /api/users/\u0661 (ARABIC-INDIC DIGIT ONE) was another name for user 1.
    app[OPENAPI] = orjson.dumps(openapi_document())
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_post("/api/notify/", notify)
    app.router.add_post("/api/notify", notify)
    app.router.add_get("/api/notifications", list_notifications)
    app.router.add_get("/api/notifications/", list_notifications)
    app.router.add_get(r"/api/notifications/{id:[0-9]{1,20}}", get_notification)
    app.router.add_post(r"/api/notifications/{id:[0-9]{1,20}}/cancel", cancel_notification)
    app.router.add_post(r"/api/notifications/{id:[0-9]{1,20}}/retry", retry_notification)
    app.router.add_post("/api/users/", create_user)
    app.router.add_post("/api/users", create_user)
    app.router.add_get(r"/api/users/{id:[0-9]{1,20}}", get_user)
    app.router.add_patch(r"/api/users/{id:[0-9]{1,20}}", update_user)
    app.router.add_get(r"/api/users/{id:[0-9]{1,20}}/notifications", list_user_notifications)
    app.router.add_delete(r"/api/users/{id:[0-9]{1,20}}/suppressions/{channel}", lift_suppression)
