"""The dashboard's login and logout: an API token in, a session cookie out."""

from __future__ import annotations

import time

from aiohttp import web

from notifyd.logs import get_logger
from notifyd.web.admin.pages import LOGIN_PATH, PREFIX, read_form, redirect, render
from notifyd.web.admin.session import COOKIE_NAME, clear_cookie, set_cookie
from notifyd.web.keys import CALLER, LOGIN_THROTTLE, QUERY, SESSIONS
from notifyd.web.query import takes_query

log = get_logger(__name__)


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
    form = await read_form(request)
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
