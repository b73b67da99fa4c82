"""What every request must pass before its route runs: a Host served, a change asked for
by no other site, a readable query.

The API and the probes answer a failed check as a problem (JSON); the dashboard runs the
same checks in its own middleware and answers them as a page.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from notifyd.web.hosts import PROBE_PATHS
from notifyd.web.keys import HOSTS, QUERY
from notifyd.web.problems import ApiError, Handler
from notifyd.web.query import check_query

DASHBOARD_PREFIX = "/admin/"
# Methods that change nothing: a browser may send them from any page (it lets that page
# read the answer only if the server says so, and notifyd never does).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What Sec-Fetch-Site says when no other site asked: this origin, or the user themselves
# (the address bar, a bookmark).
OWN_SITE = frozenset({"same-origin", "none"})


def host_problem(request: web.Request) -> ApiError | None:
    """The 4xx for a Host this daemon does not answer to (the probes answer any)."""
    if request.path in PROBE_PATHS:
        return None
    return request.config_dict[HOSTS].refusal(request)


def cross_site_problem(request: web.Request) -> ApiError | None:
    """The 403 for a change that a browser says a page of another origin asked for.

    Without API tokens, a page on any site could have its visitor's browser post to the
    daemon: a POST without a body (cancel, retry) is sent without asking first, and its
    Host is the daemon's own. Browsers say where a request comes from: `Sec-Fetch-Site`
    (every current one), else `Origin`. Clients that are not browsers send neither.
    """
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site in OWN_SITE:
            return None
        return _cross_site("Sec-Fetch-Site", f"{site!r}: a page of another origin asked")
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    host = request.headers.get("Host", "")
    parts = urlsplit(origin)
    if parts.scheme in {"http", "https"} and parts.netloc.lower() == host.strip().lower():
        return None
    return _cross_site("Origin", f"{origin!r} is not this server's origin")


def _cross_site(field: str, message: str) -> ApiError:
    return ApiError(
        403,
        "Changes are not accepted from another site's pages.",
        [{"field": field, "message": message}],
    )


def query_problem(request: web.Request) -> ApiError | None:
    """The 4xx for a query string the route cannot take; else None, and `request[QUERY]`."""
    if request.match_info.http_exception is not None:
        return None  # no such route (404) or method (405): that is the answer
    try:
        request[QUERY] = check_query(request)
    except ApiError as exc:
        return exc
    return None


def request_problem(request: web.Request) -> ApiError | None:
    """Both checks, the Host first (the dashboard's own middleware runs them together)."""
    return host_problem(request) or query_problem(request)


def host_middleware() -> Middleware:
    """Before anything else, authentication included: a rebound page learns nothing, and
    another site's page changes nothing."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DASHBOARD_PREFIX):
            problem = host_problem(request) or cross_site_problem(request)
            if problem is not None:
                raise problem
        return await handler(request)

    return middleware


def query_middleware() -> Middleware:
    """After authentication: a caller without a token learns nothing of the parameters."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DASHBOARD_PREFIX):
            problem = query_problem(request)
            if problem is not None:
                raise problem
        return await handler(request)

    return middleware
