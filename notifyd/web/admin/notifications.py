"""The dashboard's notification pages.

The filtered list, one notification's attempts as a timeline, and its cancel and retry
buttons, which do what the API's cancel and retry do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from notifyd.domain import CANCELLABLE_STATUSES, CHANNELS, RETRYABLE_STATUSES, Status
from notifyd.errors import NotFoundError, WrongStatusError
from notifyd.logs import get_logger
from notifyd.web.admin.formatting import timeline
from notifyd.web.admin.pages import PREFIX, not_found, path_id, redirect, render
from notifyd.web.api import change_lifecycle
from notifyd.web.keys import CALLER, DATABASE, QUERY
from notifyd.web.problems import field_errors
from notifyd.web.query import takes_query
from notifyd.web.schemas import NotificationQuery, encode_cursor

log = get_logger(__name__)

STATUSES = tuple(Status)
# The buttons on a notification's page.
LIFECYCLE_ACTIONS = ("cancel", "retry")
# What the list page reads from its query string (any other parameter is refused).
_LIST_PARAMS = tuple(NotificationQuery.model_fields)


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
    notification_id = path_id(request)
    notifications = request.config_dict[DATABASE].notifications
    try:
        found = await notifications.get(notification_id)
    except NotFoundError:
        return await not_found(request, f"Notification {notification_id} does not exist.")
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
    notification_id = path_id(request)
    try:
        await change_lifecycle(request, notification_id, action)
    except NotFoundError:
        return await not_found(request, f"Notification {notification_id} does not exist.")
    except WrongStatusError as exc:
        return await _notification_page(request, refused=str(exc), status=409)
    log.info(
        "admin_notification_changed",
        notification_id=notification_id,
        action=action,
        caller=request[CALLER],
    )
    return redirect(f"{PREFIX}/notifications/{notification_id}?done={action}")
