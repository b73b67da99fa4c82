"""The admin dashboard: server-rendered HTML under /admin/, for operators.

A sub-application of the daemon's app. Its middleware logs the operator in (when API
tokens are set), refuses cross-site form posts, answers errors as HTML pages, and sends
headers that keep the pages out of frames and caches and forbid every script.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from notifyd.config import Settings
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger
from notifyd.web.admin.formatting import FILTERS, percent
from notifyd.web.admin.login import login, login_page, logout
from notifyd.web.admin.notifications import (
    cancel_notification,
    notification,
    notifications,
    retry_notification,
)
from notifyd.web.admin.pages import LOGIN_PATH, PREFIX, error_page, redirect, render
from notifyd.web.admin.session import COOKIE_NAME, Sessions, clear_cookie, same_origin
from notifyd.web.admin.throttle import LoginThrottle
from notifyd.web.admin.users import lift_suppression, update_user, user, users
from notifyd.web.admin.webhooks import webhooks_context
from notifyd.web.checks import request_problem
from notifyd.web.keys import CALLER, LOGIN_THROTTLE, SESSIONS
from notifyd.web.problems import ApiError, Handler

__all__ = ["add_admin", "admin_app"]

log = get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_PUBLIC = (LOGIN_PATH, f"{PREFIX}/static/")
SECURITY_HEADERS = {
    # No script runs, whatever a notification contains; styles only from the stylesheet.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_admin(app: web.Application, settings: Settings) -> None:
    """Serve the dashboard under /admin/, behind the API tokens when there are any."""
    tokens = [token.get_secret_value() for token in settings.api.tokens]
    # Before the sub-application, which would otherwise answer /admin with its 404.
    app.router.add_get(PREFIX, _to_dashboard)
    app.add_subapp(f"{PREFIX}/", admin_app(tokens))


def admin_app(tokens: list[str]) -> web.Application:
    app = web.Application(middlewares=[admin_middleware])
    app[SESSIONS] = Sessions(tokens)
    app[LOGIN_THROTTLE] = LoginThrottle()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("notifyd.web.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters=FILTERS,
    )
    env.globals["percent"] = percent
    _add_routes(app)
    app.router.add_static("/static/", STATIC_DIR)
    return app


def _add_routes(app: web.Application) -> None:
    """Every page, by path; each lives in the module of its section."""
    app.router.add_get("/", notifications)
    app.router.add_get(r"/notifications/{id:[0-9]{1,20}}", notification)
    app.router.add_post(r"/notifications/{id:[0-9]{1,20}}/cancel", cancel_notification)
    app.router.add_post(r"/notifications/{id:[0-9]{1,20}}/retry", retry_notification)
    app.router.add_get("/users", users)
    app.router.add_get("/webhooks", _webhooks)
    app.router.add_get(r"/users/{id:[0-9]{1,20}}", user)
    app.router.add_post(r"/users/{id:[0-9]{1,20}}", update_user)
    app.router.add_post(
        r"/users/{id:[0-9]{1,20}}/suppressions/{channel:(?:email|sms|telegram)}", lift_suppression
    )
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)


async def _webhooks(request: web.Request) -> web.Response:
    """GET /admin/webhooks: each endpoint, and the latest status events."""
    return await render(request, "webhooks.html", await webhooks_context(request))


async def _to_dashboard(_request: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/")


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _guarded(request, handler)
    except DatabaseUnavailableError:
        log.warning("admin_database_unavailable", path=request.path)
        response = await error_page(
            request, 503, "Database unavailable", "The database does not answer; try again."
        )
        response.headers["Retry-After"] = "5"
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = await error_page(request, exc.status, exc.reason, _detail(exc.status))
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        # Pages hold people's contacts: keep them out of shared caches and the disk cache.
        response.headers["Cache-Control"] = "no-store"
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The checks the API's middleware runs, answered as a page (a foreign Host first: it
    # is what a DNS-rebinding page sends, and nothing else must run for it).
    problem = request_problem(request)
    if problem is not None:
        return await _problem_page(request, problem)
    if request.method not in {"GET", "HEAD"} and not same_origin(request):
        log.warning("admin_cross_site_refused", path=request.path, method=request.method)
        return await error_page(
            request, 403, "Forbidden", "A form of another site cannot change anything here."
        )
    sessions = request.config_dict[SESSIONS]
    if not sessions.enabled:
        request[CALLER] = ""
        return await handler(request)
    if request.path.startswith(_PUBLIC):
        return await handler(request)
    cookie = request.cookies.get(COOKIE_NAME)
    caller = sessions.verify(cookie, time.time())
    if caller is None:
        target = LOGIN_PATH
        if request.method in {"GET", "HEAD"}:
            target = f"{LOGIN_PATH}?{urlencode({'next': request.path_qs})}"
        response = redirect(target)
        if cookie is not None:
            clear_cookie(response, request)  # expired, forged, or from before a token change
        return response
    request[CALLER] = caller
    return await handler(request)


async def _problem_page(request: web.Request, problem: ApiError) -> web.Response:
    if problem.status == 421:
        log.warning("admin_host_refused", host=request.headers.get("Host"), path=request.path)
    named = "; ".join(f"{error['field']}: {error['message']}" for error in problem.errors or [])
    detail = f"{problem.detail} {named}".strip()
    # The dashboard answers a bad query string with 400, as it does a bad filter value.
    status = 400 if problem.status == 422 else problem.status
    return await error_page(request, status, HTTPStatus(status).phrase, detail)


def _detail(status: int) -> str:
    if status == 404:
        return "There is no such page."
    if status == 405:
        return "This page does not take that method."
    return "The request could not be handled."
