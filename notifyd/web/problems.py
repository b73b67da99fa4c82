"""One error format for every answer: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# RFC 9110 names; Python's http.HTTPStatus has older ones for these before 3.13.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer with a status other than 2xx; `errors` name the offending fields."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as [{"field": ..., "message": ...}], the field a top-level name."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = [str(part) for part in error["loc"]]
        field = location[0] if location else "(body)"
        message = error["msg"].removeprefix("Value error, ")
        if len(location) > 1:
            message = f"item {'.'.join(location[1:])}: {message}"
        errors.append({"field": field, "message": message})
    return errors


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as problem+json, and never with a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return problem_response(
            exc.status, exc.detail, instance=request.path, errors=exc.errors, headers=exc.headers
        )
    except DatabaseUnavailableError:
        log.warning("request_database_unavailable", path=request.path, method=request.method)
        return problem_response(
            503,
            "The database is unavailable; try again shortly.",
            instance=request.path,
            headers={"Retry-After": "5"},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
        return problem_response(
            exc.status, _detail(exc), instance=request.path, headers=headers or None
        )
    except Exception as exc:
        log.error(
            "request_failed",
            path=request.path,
            method=request.method,
            error_type=type(exc).__name__,
            exc_info=exc,
        )
        return problem_response(500, "Internal error; see the server log.", instance=request.path)


def _detail(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "No such resource."
    if exc.status == 405:
        return f"Method not allowed; use {exc.headers.get('Allow', 'another method')}."
    if exc.status == 413:
        return "The request body is too large."
    return exc.reason
