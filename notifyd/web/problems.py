"""One error format for every answer: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# RFC 9110 names; Python's http.HTTPStatus has older ones for these before 3.13.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What reading a request raises when its client goes away mid-body, or sends a body that
# cannot be decoded (a broken chunk, gzip that is not): the client's doing, not notifyd's.
CLIENT_FAULTS = (ConnectionResetError, RequestPayloadError, HttpProcessingError)


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
    except CLIENT_FAULTS as exc:
        return client_fault(request, exc)
    except Exception as exc:
        log.error(
            "request_failed",
            path=request.path,
            method=request.method,
            error_type=type(exc).__name__,
            exc_info=exc,
        )
        return problem_response(500, "Internal error; see the server log.", instance=request.path)


def client_fault(request: web.Request, exc: BaseException) -> web.Response:
    """The answer to a request whose client left mid-body or sent one that cannot be read.

    Logged at info level without a traceback: anyone can cause it, and it says nothing
    about notifyd. A client that left never sees the answer.
    """
    if isinstance(exc, ConnectionResetError):
        log.info("http_client_disconnected", path=request.path, method=request.method)
        detail = "The connection closed before the request arrived whole."
    else:
        reason = fault_reason(exc)
        log.info("http_bad_body", path=request.path, method=request.method, error=reason)
        detail = f"The request body could not be read: {reason}."
    response = problem_response(
        400, detail, instance=request.path, errors=[{"field": "(body)", "message": detail}]
    )
    response.force_close()
    return response


def fault_reason(exc: BaseException) -> str:
    """What aiohttp's parser says is wrong, without the request bytes it goes on to quote.

    Its errors read "400, message:\n  Invalid char in url query:\n\n  b'GET /x?...'".
    """
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    text = text.partition("message:")[2] or text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    # "Got more than 8190 bytes when reading: b'aaaa...'": not the bytes themselves.
    reason = re.split(r":? (?:b|bytearray\()['\"]", reason, maxsplit=1)[0]
    return reason.rstrip(":")[:200]


def _detail(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "No such resource."
    if exc.status == 405:
        return f"Method not allowed; use {exc.headers.get('Allow', 'another method')}."
    if exc.status == 413:
        return "The request body is too large."
    return exc.reason
