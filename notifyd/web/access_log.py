"""The access log: one `http_request` line per request, when `log.access` is on (or at debug).

A line holds the method, the path, the names of the query parameters, the status, the
duration and the caller's token id. Never a query value (`?password=...` would be logged
otherwise), never a header (the bearer token, the dashboard's cookie), never a body.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Final

from aiohttp import web

from notifyd.config import MIN_TOKEN_LENGTH
from notifyd.logs import get_logger
from notifyd.web.keys import CALLER
from notifyd.web.problems import Handler

log = get_logger(__name__)

# A longer path is cut: a line stays a line whatever a client sends.
MAX_PATH_CHARS: Final = 200
# A query parameter's name is logged only if it is a plain word shorter than the shortest
# API token, so that a token sent as a bare `?<token>` cannot be logged as a name.
_PLAIN_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MIN_TOKEN_LENGTH - 1}}}")
HIDDEN_NAME: Final = "?"
# What the status is logged as when the client went away before the answer (nginx's code).
CLIENT_CLOSED: Final = 499


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log the request once it is answered, however it ends."""
    started = time.perf_counter()
    status = 500  # an exception that escapes here becomes aiohttp's 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects raised by handlers
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        log.info(
            "http_request",
            method=request.method,
            path=_path(request.path),
            query=query_names(request),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            # The token's id, set by the API's or the dashboard's login check: None where
            # neither ran (probes, metrics, a refused token), "" when no tokens are set.
            caller=request.get(CALLER),
        )


def query_names(request: web.Request) -> list[str]:
    """The query parameters' names, in order, once each; anything unusual as `?`."""
    names: dict[str, None] = {}
    for name in request.query:
        names[name if _PLAIN_NAME.fullmatch(name) else HIDDEN_NAME] = None
    return list(names)


def _path(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else path[:MAX_PATH_CHARS] + "…"
