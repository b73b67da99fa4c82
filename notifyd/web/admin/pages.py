"""What every dashboard page is made with: the layout's counts, errors, redirects, ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from notifyd.domain import BIGINT_MAX
from notifyd.web.keys import CALLER, DATABASE, SESSIONS

PREFIX = "/admin"
LOGIN_PATH = f"{PREFIX}/login"

# The header's counts cover this many seconds back.
COUNTS_WINDOW = 3600.0


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The form's fields; a 400 page when the body cannot be read as a form.

    aiohttp raises UnicodeDecodeError for bytes that are not UTF-8 and ValueError for a
    multipart body that is not one: anyone may send those, and they say nothing about
    notifyd (a 500 and a traceback did).
    """
    try:
        return await request.post()
    except ValueError:  # UnicodeDecodeError is one too
        raise web.HTTPBadRequest() from None


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


def valid_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20 and 1 <= int(text) <= BIGINT_MAX


def path_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not valid_id(text):
        raise web.HTTPNotFound()
    return int(text)


async def not_found(request: web.Request, detail: str) -> web.Response:
    return await error_page(request, 404, "Not found", detail)
