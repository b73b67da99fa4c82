"""The dashboard's pages: notifications, one notification's attempts, users, login."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from notifyd.domain import (
    BIGINT_MAX,
    CANCELLABLE_STATUSES,
    CHANNELS,
    RETRYABLE_STATUSES,
    Channel,
    NotificationFilter,
    Status,
    User,
)
from notifyd.errors import ConstraintViolationError, NotFoundError, WrongStatusError
from notifyd.logs import get_logger
from notifyd.web.admin.formatting import timeline
from notifyd.web.admin.session import COOKIE_NAME, clear_cookie, set_cookie
from notifyd.web.admin.webhooks import webhooks_context
from notifyd.web.keys import CALLER, DATABASE, LOGIN_THROTTLE, METRICS, QUERY, SESSIONS
from notifyd.web.problems import field_errors
from notifyd.web.query import takes_query
from notifyd.web.schemas import NotificationQuery, UserUpdate, encode_cursor

log = get_logger(__name__)

PREFIX = "/admin"
LOGIN_PATH = f"{PREFIX}/login"

# The header's counts cover this many seconds back.
COUNTS_WINDOW = 3600.0
PAGE_SIZE = 50
RECENT_NOTIFICATIONS = 20
STATUSES = tuple(Status)
CONTACT_FIELDS = ("email", "phone", "telegram_chat_id")
# The buttons on a notification's page.
LIFECYCLE_ACTIONS = ("cancel", "retry")
# What the list page reads from its query string (any other parameter is refused).
_LIST_PARAMS = tuple(NotificationQuery.model_fields)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    counts: bool = True,
) -> web.Response:
    """A page; with the header's counts unless `counts` is False (login, errors)."""
    sessions = request.config_dict[SESSIONS]
    page = {
        "counts": (
            await request.config_dict[DATABASE].dashboard.counts(COUNTS_WINDOW) if counts else None
        ),
        "login_required": sessions.enabled,
        "logged_in": CALLER in request,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)


async def error_page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return await render(
        request, "error.html", {"title": title, "detail": detail}, status=status, counts=False
    )


# Notifications


@takes_query(*_LIST_PARAMS)
async def notifications(request: web.Request) -> web.Response:
    """GET /admin/: notifications, newest first, filtered, a page at a time."""
    # The filter form sends every field; an empty one is no filter.
    params = {name: value.strip() for name, value in request[QUERY].items() if value.strip()}
    filters = {name: value for name, value in params.items() if name != "cursor"}
    context: dict[str, Any] = {
        "section": "notifications",
        "params": params,
        "statuses": STATUSES,
        "channels": CHANNELS,
        "items": [],
        "errors": [],
        "next_url": None,
        "first_url": _list_url(filters) if "cursor" in params else None,
    }
    try:
        query = NotificationQuery.model_validate(params)
    except ValidationError as exc:
        context["errors"] = field_errors(exc)
        return await render(request, "notifications.html", context, status=400)
    found = await request.config_dict[DATABASE].notifications.page(
        query.to_filter(), query.limit + 1
    )
    context["items"] = page = found[: query.limit]
    if len(found) > query.limit and page:
        context["next_url"] = _list_url({**filters, "cursor": encode_cursor(page[-1].id)})
    return await render(request, "notifications.html", context)


def _list_url(params: Mapping[str, str]) -> str:
    return f"{PREFIX}/?{urlencode(params)}" if params else f"{PREFIX}/"


@takes_query("done")
async def notification(request: web.Request) -> web.Response:
    """GET /admin/notifications/{id}: the notification and its attempts as a timeline."""
    done = request[QUERY].get("done", "")
    return await _notification_page(request, done=done if done in LIFECYCLE_ACTIONS else "")


async def _notification_page(
    request: web.Request, *, done: str = "", refused: str = "", status: int = 200
) -> web.Response:
    notification_id = _path_id(request)
    notifications = request.config_dict[DATABASE].notifications
    try:
        found = await notifications.get(notification_id)
    except NotFoundError:
        return await _not_found(request, f"Notification {notification_id} does not exist.")
    attempts = await notifications.attempts([notification_id])
    context = {
        "section": "notifications",
        "n": found,
        "timeline": timeline(found, attempts[notification_id]),
        "done": done,
        "refused": refused,
        "may_cancel": found.status in CANCELLABLE_STATUSES and found.cancel_requested_at is None,
        "may_retry": found.status in RETRYABLE_STATUSES,
    }
    return await render(request, "notification.html", context, status=status)


async def cancel_notification(request: web.Request) -> web.Response:
    """POST /admin/notifications/{id}/cancel: the API's cancel, from the page's button."""
    return await _lifecycle(request, "cancel")


async def retry_notification(request: web.Request) -> web.Response:
    """POST /admin/notifications/{id}/retry: the API's retry, from the page's button."""
    return await _lifecycle(request, "retry")


async def _lifecycle(request: web.Request, action: str) -> web.Response:
    notification_id = _path_id(request)
    lifecycle = request.config_dict[DATABASE].lifecycle
    metrics = request.config_dict[METRICS]
    try:
        if action == "cancel":
            await lifecycle.cancel(notification_id)
            metrics.cancels.inc()
        else:
            await lifecycle.retry(notification_id)
            metrics.retries.inc()
    except NotFoundError:
        return await _not_found(request, f"Notification {notification_id} does not exist.")
    except WrongStatusError as exc:
        return await _notification_page(request, refused=str(exc), status=409)
    log.info(
        "admin_notification_changed",
        notification_id=notification_id,
        action=action,
        caller=request[CALLER],
    )
    return redirect(f"{PREFIX}/notifications/{notification_id}?done={action}")


# Users


@takes_query("user_id", "after")
async def users(request: web.Request) -> web.Response:
    """GET /admin/users: users by id, a page at a time; ?user_id= opens one."""
    wanted = request[QUERY].get("user_id", "").strip()
    if wanted:
        if _valid_id(wanted):
            return redirect(f"{PREFIX}/users/{int(wanted)}")
        return await _users_page(request, None, ["user_id: must be a user id (a number)"])
    after = request[QUERY].get("after", "").strip()
    if after and not _valid_id(after):
        return await _users_page(request, None, ["after: must be a user id (a number)"])
    return await _users_page(request, int(after) if after else None, [])


async def _users_page(request: web.Request, after: int | None, errors: list[str]) -> web.Response:
    found = [] if errors else await request.config_dict[DATABASE].users.page(after, PAGE_SIZE + 1)
    page = found[:PAGE_SIZE]
    next_url = None
    if len(found) > PAGE_SIZE:
        next_url = f"{PREFIX}/users?{urlencode({'after': page[-1].id})}"
    context = {
        "section": "users",
        "items": page,
        "errors": errors,
        "next_url": next_url,
        "first_page": bool(after),
    }
    return await render(request, "users.html", context, status=400 if errors else 200)


async def lift_suppression(request: web.Request) -> web.Response:
    """POST /admin/users/{id}/suppressions/{channel}: try that contact again."""
    user_id = _path_id(request)
    channel = Channel(request.match_info["channel"])  # the route takes known names only
    users = request.config_dict[DATABASE].users
    if not await users.lift_suppression(user_id, channel):
        try:
            await users.get(user_id)
        except NotFoundError:
            return await _not_found(request, f"User {user_id} does not exist.")
        return await _not_found(request, f"User {user_id} has no suppression on {channel}.")
    log.info("admin_suppression_lifted", user_id=user_id, channel=channel, caller=request[CALLER])
    return redirect(f"{PREFIX}/users/{user_id}?lifted={channel}")


@takes_query("saved", "lifted")
async def user(request: web.Request) -> web.Response:
    """GET /admin/users/{id}: contacts (an edit form) and recent notifications."""
    user_id = _path_id(request)
    try:
        found = await request.config_dict[DATABASE].users.get(user_id)
    except NotFoundError:
        return await _not_found(request, f"User {user_id} does not exist.")
    values = {name: getattr(found, name) or "" for name in CONTACT_FIELDS}
    lifted = request[QUERY].get("lifted")
    return await _user_page(
        request,
        found,
        values,
        {},
        saved="saved" in request[QUERY],
        lifted=lifted if lifted in CHANNELS else None,
    )


async def update_user(request: web.Request) -> web.Response:
    """POST /admin/users/{id}: change the contacts; an empty field clears that contact.

    Checked by the API's own rules (UserUpdate): a bad value is shown next to its field,
    and nothing is written.
    """
    user_id = _path_id(request)
    users = request.config_dict[DATABASE].users
    form = await request.post()
    # Only the fields the form sent change; a blank one clears the contact.
    sent = {
        name: value.strip() for name in CONTACT_FIELDS if isinstance(value := form.get(name), str)
    }
    errors: dict[str, str] = {}
    try:
        changes = UserUpdate.model_validate(
            {name: value or None for name, value in sent.items()}
        ).contacts()
    except ValidationError as exc:
        for error in field_errors(exc):
            errors.setdefault(error["field"], error["message"])
    else:
        try:
            await users.update(user_id, changes)
        except NotFoundError:
            return await _not_found(request, f"User {user_id} does not exist.")
        except ConstraintViolationError as exc:
            field = exc.constraint.removeprefix("users_").removesuffix("_format")
            name = field if field in CONTACT_FIELDS else "(body)"
            errors[name] = f"refused by the database ({exc.constraint})"
        else:
            log.info(
                "admin_user_updated",
                user_id=user_id,
                caller=request[CALLER],
                fields=sorted(changes),
            )
            return redirect(f"{PREFIX}/users/{user_id}?saved=1")
    try:
        found = await users.get(user_id)
    except NotFoundError:
        return await _not_found(request, f"User {user_id} does not exist.")
    # What was typed stays in the form, next to what is wrong with it.
    values = {name: sent.get(name, getattr(found, name) or "") for name in CONTACT_FIELDS}
    return await _user_page(request, found, values, errors, status=422)


async def _user_page(
    request: web.Request,
    found: User,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    saved: bool = False,
    lifted: str | None = None,
    status: int = 200,
) -> web.Response:
    recent = await request.config_dict[DATABASE].notifications.page(
        NotificationFilter(user_id=found.id), RECENT_NOTIFICATIONS
    )
    context = {
        "section": "users",
        "u": found,
        "values": values,
        "errors": errors,
        "saved": saved,
        "lifted": lifted,
        "recent": recent,
        "fields": CONTACT_FIELDS,
        "all_url": f"{PREFIX}/?{urlencode({'user_id': found.id})}",
    }
    return await render(request, "user.html", context, status=status)


# Status webhooks


async def webhooks(request: web.Request) -> web.Response:
    """GET /admin/webhooks: each endpoint, and the latest status events."""
    return await render(request, "webhooks.html", await webhooks_context(request))


# Login


@takes_query("next")
async def login_page(request: web.Request) -> web.Response:
    """GET /admin/login: the form that takes an API token."""
    sessions = request.config_dict[SESSIONS]
    target = safe_next(request[QUERY].get("next"))
    if not sessions.enabled or sessions.verify(request.cookies.get(COOKIE_NAME), time.time()):
        return redirect(target)
    return await render(request, "login.html", {"next": target, "error": None}, counts=False)


async def login(request: web.Request) -> web.Response:
    """POST /admin/login: check the token, then set the session cookie."""
    sessions = request.config_dict[SESSIONS]
    form = await request.post()
    target = safe_next(_text(form.get("next")))
    if not sessions.enabled:
        return redirect(target)
    # Counted before the token is looked at: every try costs, the right one too.
    wait = request.config_dict[LOGIN_THROTTLE].retry_after(request.remote)
    if wait:
        log.warning("admin_login_throttled", remote=request.remote, retry_after=wait)
        context = {"next": target, "error": f"Too many attempts; try again in {wait} s."}
        response = await render(request, "login.html", context, status=429, counts=False)
        response.headers["Retry-After"] = str(wait)
        return response
    caller = sessions.caller(_text(form.get("token")))
    if caller is None:
        log.warning("admin_login_refused", remote=request.remote)
        context = {"next": target, "error": "That is not a valid API token."}
        return await render(request, "login.html", context, status=403, counts=False)
    log.info("admin_login", caller=caller, remote=request.remote)
    response = redirect(target)
    set_cookie(response, request, sessions.issue(caller, time.time()), sessions.lifetime)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /admin/logout: drop the session cookie."""
    log.info("admin_logout", caller=request[CALLER])
    response = redirect(LOGIN_PATH)
    clear_cookie(response, request)
    return response


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path, never another site."""
    if (
        not value
        or not value.startswith(f"{PREFIX}/")
        or value.startswith(LOGIN_PATH)
        or "//" in value
        or "\\" in value
        or not value.isprintable()
    ):
        return f"{PREFIX}/"
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _valid_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20 and 1 <= int(text) <= BIGINT_MAX


def _path_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not _valid_id(text):
        raise web.HTTPNotFound()
    return int(text)


async def _not_found(request: web.Request, detail: str) -> web.Response:
    return await error_page(request, 404, "Not found", detail)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", notifications)
    app.router.add_get(r"/notifications/{id:\d{1,20}}", notification)
    app.router.add_post(r"/notifications/{id:\d{1,20}}/cancel", cancel_notification)
    app.router.add_post(r"/notifications/{id:\d{1,20}}/retry", retry_notification)
    app.router.add_get("/users", users)
    app.router.add_get("/webhooks", webhooks)
    app.router.add_get(r"/users/{id:\d{1,20}}", user)
    app.router.add_post(r"/users/{id:\d{1,20}}", update_user)
    app.router.add_post(
        r"/users/{id:\d{1,20}}/suppressions/{channel:(?:email|sms|telegram)}", lift_suppression
    )
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
