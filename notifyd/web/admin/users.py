"""The dashboard's user pages.

The list, one user's contacts (an edit form checked by the API's rules) with their recent
notifications, and lifting a suppressed contact.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from notifyd.domain import CHANNELS, Channel, NotificationFilter, User
from notifyd.errors import ConstraintViolationError, NotFoundError
from notifyd.logs import get_logger
from notifyd.web.admin.pages import (
    PREFIX,
    not_found,
    path_id,
    read_form,
    redirect,
    render,
    valid_id,
)
from notifyd.web.keys import CALLER, DATABASE, QUERY
from notifyd.web.problems import field_errors
from notifyd.web.query import takes_query
from notifyd.web.schemas import UserUpdate

log = get_logger(__name__)

PAGE_SIZE = 50
RECENT_NOTIFICATIONS = 20
CONTACT_FIELDS = ("email", "phone", "telegram_chat_id")


@takes_query("user_id", "after")
async def users(request: web.Request) -> web.Response:
    """GET /admin/users: users by id, a page at a time; ?user_id= opens one."""
    wanted = request[QUERY].get("user_id", "").strip()
    if wanted:
        if valid_id(wanted):
            return redirect(f"{PREFIX}/users/{int(wanted)}")
        return await _users_page(request, None, ["user_id: must be a user id (a number)"])
    after = request[QUERY].get("after", "").strip()
    if after and not valid_id(after):
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
    user_id = path_id(request)
    channel = Channel(request.match_info["channel"])  # the route takes known names only
    users = request.config_dict[DATABASE].users
    if not await users.lift_suppression(user_id, channel):
        try:
            await users.get(user_id)
        except NotFoundError:
            return await not_found(request, f"User {user_id} does not exist.")
        return await not_found(request, f"User {user_id} has no suppression on {channel}.")
    log.info("admin_suppression_lifted", user_id=user_id, channel=channel, caller=request[CALLER])
    return redirect(f"{PREFIX}/users/{user_id}?lifted={channel}")


@takes_query("saved", "lifted")
async def user(request: web.Request) -> web.Response:
    """GET /admin/users/{id}: contacts (an edit form) and recent notifications."""
    user_id = path_id(request)
    try:
        found = await request.config_dict[DATABASE].users.get(user_id)
    except NotFoundError:
        return await not_found(request, f"User {user_id} does not exist.")
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
    user_id = path_id(request)
    users = request.config_dict[DATABASE].users
    form = await read_form(request)
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
            return await not_found(request, f"User {user_id} does not exist.")
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
        return await not_found(request, f"User {user_id} does not exist.")
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
