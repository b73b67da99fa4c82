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


def request_problem(request: web.Request) -> ApiError | None:
    """The 4xx a request gets before its route runs, or None (then `request[QUERY]` is set)."""
    if request.path not in PROBE_PATHS:
        refusal = request.config_dict[HOSTS].refusal(request)
        if refusal is not None:
            return refusal
    if request.match_info.http_exception is not None:
        return None  # no such route (404) or method (405): that is the answer
    try:
        request[QUERY] = check_query(request)
    except ApiError as exc:
        return exc
    return None


def checks_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DASHBOARD_PREFIX):
            problem = request_problem(request)
            if problem is not None:
                raise problem
        return await handler(request)

    return middleware
