"""Inbound connections, bounded in number and in how long each may keep the daemon waiting.

aiohttp's server waits as long as a client likes for a request's headers and its body, and
accepts as many connections as the operating system gives it. Connections that never
finish their request then pile up until the process runs out of file descriptors, and the
next SMTP or vendor connection fails with "Too many open files". Go servers have
ReadHeaderTimeout, cowboy its request_timeout; aiohttp has neither, so this module adds
them around aiohttp's own protocol (`web.RequestHandler`), as deadlines per connection:

    connected ──header_timeout──► headers in ──body_timeout──► body in ─► answered
        ▲                                                                     │
        └──────── first byte of the next request ◄──idle_timeout── waiting ◄──┘

A deadline that passes drops the connection: a 408 answer for headers begun and not
finished, nothing for a connection that sent nothing, an abort mid-body. While an answer
waits for a client that does not read it, `send_timeout` runs. With `max_connections`
open at once, a new connection replaces the longest-idle kept-alive one, or gets a 503
and is closed at once, so the descriptors kept in reserve for the database and the
vendors stay free (see `notifyd.web.server`).

Errors the client causes (malformed HTTP, a body it abandons) are logged at info level
without a traceback: a stranger can send them at will, and they say nothing about notifyd.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Middleware

from notifyd.logs import get_logger
from notifyd.web.problems import (
    CLIENT_FAULTS,
    PROBLEM_CONTENT_TYPE,
    Handler,
    fault_reason,
    problem_response,
)

log = get_logger(__name__)

# A refused connection is logged at most this often (with how many were refused since).
REFUSAL_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections at once, and how long each phase of a request may take."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    send_timeout: float


class _Phase(enum.Enum):
    HEADERS = "headers"  # waiting for a request's headers
    BODY = "body"  # headers in, waiting for the body
    HANDLING = "handling"  # the whole request is in; notifyd is answering
    IDLE = "idle"  # answered; waiting for the next request


def _raw_answer(status: int, reason: str, detail: str, headers: str = "") -> bytes:
    """A whole HTTP answer that closes the connection, written straight to a transport."""
    body = orjson.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail}
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    )
    return head.encode("ascii") + body


_TIMEOUT_ANSWER = _raw_answer(
    408, "Request Timeout", "The request's headers did not arrive in time."
)
_BUSY_ANSWER = _raw_answer(
    503,
    "Service Unavailable",
    "Too many connections are open; try again shortly.",
    "Retry-After: 1\r\n",
)


class Connections:
    """The protocol factory of the listening socket: counts, admits and times connections."""

    def __init__(
        self,
        manager: web.Server,
        limits: ConnectionLimits,
        handler_options: dict[str, Any],
    ) -> None:
        self.limits = limits
        self._manager = manager
        self._options = handler_options
        self.open = 0
        # Connections dropped, by reason: header_timeout, body_timeout, send_timeout,
        # idle_timeout, over_capacity, idle_evicted.
        self.dropped: Counter[str] = Counter()
        # Kept-alive connections waiting for their next request, longest waiting first.
        self._idle: dict[GuardedRequestHandler, None] = {}
        self._refused_since_log = 0
        self._refusal_logged_at = -REFUSAL_LOG_INTERVAL

    def __call__(self) -> asyncio.Protocol:
        loop = asyncio.get_running_loop()
        if self.open >= self.limits.max_connections:
            # Full: make room by closing the connection that has waited longest for a next
            # request (a client pool keeps many), or else turn the new one away. The
            # closed one's descriptor is freed a moment later: the reserve's accept burst
            # covers the overlap.
            victim = next(iter(self._idle), None)
            if victim is None:
                self._refused(loop.time())
                return _Refusal()
            self.waiting(victim, False)
            victim.evict()
        # Counted here, not in connection_made: a burst of accepts creates its protocols
        # before any of them is told of its connection.
        self.open += 1
        return GuardedRequestHandler(self._manager, self, loop=loop, **self._options)

    def waiting(self, handler: GuardedRequestHandler, idle: bool) -> None:
        """Note whether `handler` waits, kept alive, for its next request."""
        if idle:
            self._idle[handler] = None
        else:
            self._idle.pop(handler, None)

    def released(self) -> None:
        self.open -= 1

    def _refused(self, now: float) -> None:
        self.dropped["over_capacity"] += 1
        self._refused_since_log += 1
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning(
                "http_connections_refused",
                refused=self._refused_since_log,
                open=self.open,
                max_connections=self.limits.max_connections,
            )
            self._refused_since_log = 0
            self._refusal_logged_at = now


class _Refusal(asyncio.Protocol):
    """A connection beyond the cap: a 503, then closed before it can hold anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.WriteTransport, transport)  # a listening TCP socket's
        stream.write(_BUSY_ANSWER)
        stream.close()


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's protocol, with deadlines for each phase of a request (module docstring)."""

    def __init__(
        self,
        manager: web.Server,
        connections: Connections,
        *,
        loop: asyncio.AbstractEventLoop,
        **options: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **options)
        self._connections = connections
        self._limits = connections.limits
        self._phase = _Phase.HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        # Bytes of a request have arrived since the last answer (else the client is idle).
        self._partial = False
        self._in_request = False
        self._payload: StreamReader | None = None
        self._counted = True

    @property
    def phase(self) -> str:
        """What the connection waits for: headers, body, handling (notifyd's answer), idle."""
        return self._phase.value

    # The phases

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._limits.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if data:
            if self._phase is _Phase.IDLE:
                self._phase = _Phase.HEADERS
                self._connections.waiting(self, False)
                self._arm(self._limits.header_timeout, self._headers_late)
            if self._phase is _Phase.HEADERS:
                self._partial = True
        super().data_received(data)

    def request_started(self, request: web.BaseRequest) -> None:
        """A request's headers are in and notifyd starts on it (called by a middleware)."""
        self._in_request = True
        self._partial = False
        self._connections.waiting(self, False)  # pipelined: no first byte to see
        payload = request.content
        if payload.is_eof():
            self._phase = _Phase.HANDLING
            self._disarm()
        else:
            self._phase = _Phase.BODY
            self._payload = payload
            self._arm(self._limits.body_timeout, self._body_late)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_request = False
            # An unread body (an early 4xx) is still bounded by the body deadline while
            # aiohttp reads and drops the rest of it.
            if self._phase is not _Phase.BODY:
                self._idle()

    def _idle(self) -> None:
        self._phase = _Phase.IDLE
        self._payload = None
        self._connections.waiting(self, True)
        self._arm(self._limits.idle_timeout, self._idle_over)

    def evict(self) -> None:
        """Close this idle connection to make room for a new one (the cap is reached)."""
        self._disarm()
        self._drop("idle_evicted", info=False)
        self.force_close()

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport is None:
            return
        if self._partial:
            self._drop("header_timeout", info=True)
            self.transport.write(_TIMEOUT_ANSWER)
            self.force_close()
        else:
            # Connected and said nothing (a browser's speculative connection, a scanner).
            self._drop("header_timeout", info=False)
            self.force_close()

    def _body_late(self) -> None:
        self._deadline = None
        payload = self._payload
        if payload is not None and not payload.is_eof():
            self._drop("body_timeout", info=True)
            self._abort()
        elif self._in_request:
            self._phase = _Phase.HANDLING  # the body is in; notifyd is still answering
        else:
            self._idle()

    def _idle_over(self) -> None:
        self._deadline = None
        self._connections.waiting(self, False)
        self._drop("idle_timeout", info=False)
        self.force_close()

    # Sending to a client that does not read

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self._loop.call_later(self._limits.send_timeout, self._send_late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _send_late(self) -> None:
        self._send_deadline = None
        self._drop("send_timeout", info=True)
        self._abort()

    # Bookkeeping

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._connections.waiting(self, False)
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None
        if self._counted:
            self._counted = False
            self._connections.released()
        super().connection_lost(exc)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _abort(self) -> None:
        transport = self.transport
        self.force_close()
        if transport is not None:
            transport.abort()  # do not wait to flush to a client that is not reading

    def _drop(self, reason: str, *, info: bool) -> None:
        self._connections.dropped[reason] += 1
        peer = self.peername
        remote = peer[0] if isinstance(peer, tuple) else None
        (log.info if info else log.debug)("http_connection_dropped", reason=reason, remote=remote)

    # What aiohttp would log as an error, with a traceback

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # Malformed HTTP: the client's fault. Only the first line of the parser's message,
        # which goes on to quote the request's bytes.
        reason = fault_reason(exc)
        log.info("http_bad_request", status=status, error=reason, remote=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has begun; the connection is closed")
        response = problem_response(status, f"The request is not valid HTTP: {reason}.")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, CLIENT_FAULTS):
            log.info("http_request_abandoned", error_type=type(exc).__name__)
            return
        super().log_exception(*args, **kwargs)


def connection_middleware() -> Middleware:
    """Tell the connection its request has begun, so that the body deadline starts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        if isinstance(protocol, GuardedRequestHandler):
            protocol.request_started(request)
        return await handler(request)

    return middleware
