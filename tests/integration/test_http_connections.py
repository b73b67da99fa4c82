"""Inbound connections over real sockets: every stalled phase is dropped, the cap holds.

The server is the one `notifyd serve` runs (`notifyd.web.server.HttpServer`) with short
deadlines. Without them, each stalled connection below stays open for as long as its
client likes: the tests would wait for an end that never comes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.web.app import create_app
from notifyd.web.server import DescriptorBudget, HttpServer
from tests.support import make_settings, wait_until

# Short enough for a quick test; the waits below allow far more, so a slow machine passes.
DEADLINE = 0.3
PATIENCE = 20.0


@dataclass
class Served:
    server: HttpServer
    port: int

    @property
    def dropped(self) -> dict[str, int]:
        assert self.server.connections is not None
        return dict(self.server.connections.dropped)

    @property
    def open(self) -> int:
        assert self.server.connections is not None
        return self.server.connections.open

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def wait_phase(self, phase: str) -> None:
        """Wait until a connection waits for `phase` (headers, body, handling, idle)."""
        manager = self.server.runner.server
        assert manager is not None

        async def reached() -> bool:
            return any(getattr(c, "phase", None) == phase for c in manager.connections)

        await wait_until(reached, deadline=PATIENCE, what=f"a connection in phase {phase}")

    async def wait_dropped(self, reason: str, count: int = 1) -> None:
        async def dropped() -> bool:
            return self.dropped.get(reason, 0) >= count

        await wait_until(dropped, deadline=PATIENCE, what=f"{count} connection(s) {reason}")


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(database_url: str) -> AsyncIterator[Serve]:
    started: list[HttpServer] = []

    async def start(max_connections: int = 100, **http: Any) -> Served:
        timeouts = {
            "header_timeout": DEADLINE,
            "body_timeout": DEADLINE,
            "idle_timeout": DEADLINE,
            "send_timeout": DEADLINE,
        }
        settings = make_settings(database_url, http={**timeouts, **http})
        app = create_app(settings, database_url, deliver=False)
        server = HttpServer(app, settings, DescriptorBudget(None, 0, 0, max_connections))
        started.append(server)
        await server.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await server.listen(sock)
        return Served(server, sock.getsockname()[1])

    yield start
    for server in started:
        await server.close()


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), PATIENCE)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# Each stalled phase is dropped


async def test_headers_that_stop_halfway_get_a_408_and_the_connection_closes(
    serve: Serve,
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    answer = await read_all(reader)
    assert status_of(answer) == 408
    assert b"application/problem+json" in answer
    assert served.dropped == {"header_timeout": 1}
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    serve: Serve,
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    assert await read_all(reader) == b""
    assert served.dropped == {"header_timeout": 1}
    writer.close()


async def test_headers_sent_a_byte_at_a_time_are_still_bounded(serve: Serve) -> None:
    # Slowloris: each byte arrives well within the deadline, the whole never does.
    served = await serve(header_timeout=1.0)
    reader, writer = await served.connect()

    async def trickle() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X: y\r\n" * 1000:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(trickle())
    try:
        assert status_of(await read_all(reader)) == 408
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
    writer.close()


async def test_a_body_that_stops_halfway_is_dropped_and_writes_nothing(
    serve: Serve, db: asyncpg.Connection
) -> None:
    served = await serve()
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    body = f'{{"user_id": {user_id}, "message": "hello"}}'.encode()
    reader, writer = await served.connect()
    with capture_logs() as logs:
        writer.write(
            b"POST /api/notify/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:-3]
        )
        assert await read_all(reader) == b""
        await served.wait_dropped("body_timeout")
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0
    assert not [line for line in logs if line["log_level"] in {"error", "critical"}]
    writer.close()


async def test_an_unfinished_chunked_body_is_dropped(serve: Serve) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"1\r\n{\r\n"  # one chunk, and never the last (empty) one
    )
    assert await read_all(reader) == b""
    await served.wait_dropped("body_timeout")
    writer.close()


async def test_a_keep_alive_connection_left_idle_is_closed_after_its_answer(
    serve: Serve,
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = await read_all(reader)
    assert status_of(answer) == 200  # answered, then closed when nothing else came
    assert answer.endswith(b'{"status":"ok"}')
    assert served.dropped == {"idle_timeout": 1}
    writer.close()


async def test_an_answer_the_client_does_not_read_is_dropped(
    serve: Serve, db: asyncpg.Connection
) -> None:
    served = await serve()
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    # About 13 MB of answer: far more than the socket buffers hold.
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, channels, status, finished_at) "
        "SELECT $1, repeat('x', 65536), '{sms}', 'sent', now() FROM generate_series(1, 200)",
        user_id,
    )
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", served.port))
    client.setblocking(False)
    _reader, writer = await asyncio.open_connection(sock=client)
    writer.write(b"GET /api/notifications?limit=200 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await served.wait_dropped("send_timeout")  # never reading a byte
    writer.close()


# Good clients are not hurt


async def test_a_slow_body_within_the_deadline_is_served(serve: Serve) -> None:
    served = await serve(body_timeout=PATIENCE)
    reader, writer = await served.connect()
    body = b'{"phone": "+15551234567"}'
    writer.write(
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body[:5]
    )
    await asyncio.sleep(DEADLINE * 2)  # longer than the header deadline: it no longer runs
    writer.write(body[5:])
    assert status_of(await read_all(reader)) == 201
    writer.close()


async def test_pipelined_requests_are_all_answered(serve: Serve) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3
        + b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    answer = await read_all(reader)
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    writer.close()


async def test_an_http_1_0_request_is_answered_and_closed(serve: Serve) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    answer = await read_all(reader)
    assert status_of(answer) == 200
    assert served.dropped == {}
    writer.close()


# The cap


async def test_connections_beyond_the_cap_get_a_503_and_are_closed_at_once(
    serve: Serve,
) -> None:
    served = await serve(max_connections=2, header_timeout=PATIENCE)
    held = [await served.connect() for _ in range(2)]

    async def both_open() -> bool:
        return served.open == 2

    await wait_until(both_open, what="two connections held")
    reader, writer = await served.connect()
    answer = await read_all(reader)  # closed without waiting for any deadline
    assert status_of(answer) == 503
    assert b"Retry-After: 1" in answer
    assert served.dropped == {"over_capacity": 1}
    writer.close()

    # One held connection leaves: a new one is served.
    held[0][1].close()

    async def one_open() -> bool:
        return served.open == 1

    await wait_until(one_open, what="the first connection released")
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(await read_all(reader)) == 200
    writer.close()
    held[1][1].close()


# What the client's faults leave in the log


async def test_a_client_that_disconnects_mid_body_is_logged_quietly(serve: Serve) -> None:
    served = await serve(body_timeout=PATIENCE)
    _reader, writer = await served.connect()
    with capture_logs() as logs:
        writer.write(
            b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()

        await served.wait_phase("body")
        writer.transport.abort()

        async def logged() -> bool:
            return any(line["event"] == "http_client_disconnected" for line in logs)

        await wait_until(logged, deadline=PATIENCE, what="the disconnection logged")
    event = next(line for line in logs if line["event"] == "http_client_disconnected")
    assert event["log_level"] == "info"
    assert "exc_info" not in event
    assert not [line for line in logs if line["log_level"] in {"error", "critical"}]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /x?a=\xff HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: br\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["bad-query-byte", "not-http", "two-hosts", "unknown-coding", "bad-gzip", "bad-chunk"],
)
async def test_malformed_http_gets_a_4xx_problem_and_no_error_in_the_log(
    serve: Serve, request_bytes: bytes
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    with capture_logs() as logs:
        writer.write(request_bytes)
        answer = await read_all(reader)
    assert 400 <= status_of(answer) < 500, answer
    assert b"application/problem+json" in answer
    assert not [line for line in logs if line["log_level"] in {"error", "critical"}], logs
    writer.close()


async def test_a_broken_chunk_after_the_headers_ends_the_request(serve: Serve) -> None:
    # aiohttp queues the parser's error behind the request reading the body, which then
    # waits for a chunk that cannot come: the body deadline ends it.
    served = await serve()
    reader, writer = await served.connect()
    writer.write(
        b"POST /api/users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    await served.wait_phase("body")
    writer.write(b"zz\r\n{}\r\n0\r\n\r\n")
    await read_all(reader)
    await served.wait_dropped("body_timeout")
    writer.close()


async def test_at_the_cap_the_longest_idle_connection_makes_room(serve: Serve) -> None:
    # Kept-alive connections of client pools fill the cap; a new client still gets in.
    served = await serve(max_connections=2, idle_timeout=PATIENCE, header_timeout=PATIENCE)
    pool = [await served.connect() for _ in range(2)]
    for _reader, writer in pool:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for reader, _writer in pool:
        assert status_of(await reader.readuntil(b'{"status":"ok"}')) == 200
    await served.wait_phase("idle")

    async def both_idle() -> bool:
        manager = served.server.runner.server
        assert manager is not None
        return sum(getattr(c, "phase", None) == "idle" for c in manager.connections) == 2

    await wait_until(both_idle, what="both pooled connections idle")
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(await read_all(reader)) == 200
    assert await read_all(pool[0][0]) == b""  # the first pooled connection was closed
    assert served.dropped.get("idle_evicted") == 1
    assert "over_capacity" not in served.dropped
    writer.close()
    for _reader, pooled in pool:
        pooled.close()


async def test_an_overlong_header_is_refused_without_echoing_it(serve: Serve) -> None:
    served = await serve()
    reader, writer = await served.connect()
    with capture_logs() as logs:
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX: " + b"q" * 20_000 + b"\r\n\r\n"
        )
        answer = await read_all(reader)
    assert status_of(answer) == 400
    assert b"qqqq" not in answer
    assert "qqqq" not in str(logs)
    writer.close()
