"""What every request must pass before its route runs: a Host served, a readable query.

The API and the probes answer a failed check as a problem (JSON); the dashboard runs the
same checks in its own middleware and answers them as a page.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from notifyd.web.hosts import PROBE_PATHS
from notifyd.web.keys import HOSTS, QUERY
from notifyd.web.problems import ApiError, Handler
from notifyd.web.query import check_query

DASHBOARD_PREFIX = "/admin/"


def host_problem(request: web.Request) -> ApiError | None:
    """The 4xx for a Host this daemon does not answer to (the probes answer any)."""
    if request.path in PROBE_PATHS:
        return None
    return request.config_dict[HOSTS].refusal(request)


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
    """Before anything else, authentication included: a rebound page learns nothing."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DASHBOARD_PREFIX):
            problem = host_problem(request)
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
