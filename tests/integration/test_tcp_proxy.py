"""The partition proxy of the fault tests: relays, holds everything while paused, resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.fakes.tcp_proxy import TcpProxy, postgres_target, proxied_postgres_url

# How long "nothing arrives" is watched for. A correct proxy never relays while paused,
# so this bounds the test's length, not its outcome.
QUIET = 0.3


class EchoServer:
    """Sends back every byte; remembers what it got and whether the client closed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.received = bytearray()
        self.closed_by_client = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while data := await reader.read(1024):
            self.received += data
            writer.write(data)
            await writer.drain()
        self.closed_by_client.set()
        writer.close()

    async def start_tcp(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def start_unix(self, path: Path) -> str:
        self.server = await asyncio.start_unix_server(self._echo, str(path))
        return str(path)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    yield server
    await server.stop()


async def nothing_within(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1024), QUIET)
    except TimeoutError:
        return True
    raise AssertionError(f"got {data!r} while paused")


async def test_relays_both_ways_to_tcp_and_unix_targets(echo: EchoServer, tmp_path: Path) -> None:
    tcp = await echo.start_tcp()
    async with TcpProxy(tcp) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        await echo.closed_by_client.wait()  # the close is relayed too
        assert proxy.connections == 1
    await echo.stop()

    unix = EchoServer()
    path = await unix.start_unix(tmp_path / "echo.sock")
    try:
        async with TcpProxy(path) as proxy:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"over a unix socket")
            assert await reader.readexactly(18) == b"over a unix socket"
            writer.close()
    finally:
        await unix.stop()


async def test_pause_holds_data_and_closes_nothing_until_resumed(echo: EchoServer) -> None:
    async with TcpProxy(await echo.start_tcp()) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"

        proxy.pause()
        writer.write(b"held")
        await writer.drain()
        late_reader, late_writer = await asyncio.open_connection(proxy.host, proxy.port)
        late_writer.write(b"new")
        assert await nothing_within(reader)
        assert await nothing_within(late_reader)
        assert bytes(echo.received) == b"before"
        assert echo.accepted == 1, "a new connection reaches the target only after the pause"
        # The client gives up and closes: the server must not learn it while partitioned.
        late_writer.close()
        assert not echo.closed_by_client.is_set()
        assert not reader.at_eof()
        assert proxy.connections == 2

        proxy.resume()
        assert await reader.readexactly(4) == b"held"
        writer.write(b"after")
        assert await reader.readexactly(5) == b"after"
        await echo.closed_by_client.wait()  # the late one: its data, then its close
        assert echo.accepted == 2
        assert bytes(echo.received).count(b"new") == 1
        writer.close()


async def test_a_paused_postgres_session_stays_open_and_answers_after_resume(
    database_url: str, db: asyncpg.Connection
) -> None:
    async with TcpProxy(postgres_target(database_url)) as proxy:
        connection = await asyncpg.connect(proxied_postgres_url(database_url, proxy))
        try:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            proxy.pause()
            query = asyncio.create_task(connection.fetchval("SELECT 2"))
            done, _ = await asyncio.wait({query}, timeout=QUIET)
            assert not done, "a query answered through a paused proxy"
            # The server still has the session: nothing was closed.
            assert await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
            proxy.resume()
            assert await query == 2
            assert await connection.fetchval("SELECT pg_backend_pid()") == pid
        finally:
            await connection.close()
