"""A TCP proxy that can stop relaying: a silent network partition, for tests.

It listens on 127.0.0.1 and relays each connection to a target, a (host, port) or a Unix
socket path. `pause()` stops relaying in both directions without closing anything, as
when a network partition or a NAT that forgot the flow drops every packet: a client's
queries get no answer and no error, a new connection is accepted but reaches nothing, and
a client that gives up and closes is not seen to close by the server (which keeps its
session, and the session's locks). `resume()` delivers whatever was held, in order.

Data already handed to the kernel before a pause still arrives; everything read after it
is held in the proxy, and the proxy stops reading, so the senders' buffers fill up too.
"""

from __future__ import annotations

import asyncio
from typing import TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Target: TypeAlias = tuple[str, int] | str  # (host, port), or the path of a Unix socket

CHUNK = 64 * 1024


class TcpProxy:
    """Relays connections on 127.0.0.1:`port` to `target`, until paused."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0  # connections accepted since creation
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    @property
    def open_connections(self) -> int:
        """Client connections accepted and not yet finished."""
        return len(self._tasks)

    def pause(self) -> None:
        """Stop relaying, in both directions, on every connection (open or new)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Relay again, starting with what was held."""
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection, held data and all."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Held relays go on, into connections that are gone, and end; not cancelled: the
        # stream server would log each cancelled connection as an error.
        self._flowing.set()
        await asyncio.gather(*self._tasks)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client)
        self.connections += 1
        try:
            # Partitioned, a new connection reaches nothing: the target sees it only later.
            await self._flowing.wait()
            if self._server is None:
                return  # stopped meanwhile
            try:
                upstream_reader, upstream = await self._open_target()
            except OSError:
                return
            self._writers.add(upstream)
            try:
                await asyncio.gather(
                    self._pump(client_reader, upstream, client),
                    self._pump(upstream_reader, client, upstream),
                )
            finally:
                self._writers.discard(upstream)
                upstream.close()
        finally:
            self._writers.discard(client)
            client.close()
            self._tasks.discard(task)

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        host, port = self.target
        return await asyncio.open_connection(host, port)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: asyncio.StreamWriter,
    ) -> None:
        """Copy `reader` to `writer` while flowing; pass the end of the stream on too."""
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            await self._flowing.wait()  # a close is a packet too: held while partitioned
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            # One side broke off: so does the other, as a relayed reset would.
            writer.transport.abort()
            source.transport.abort()


def postgres_target(url: str) -> Target:
    """Where a libpq-style PostgreSQL URL connects: a Unix socket path or (host, port)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or "localhost"
    port = int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def proxied_postgres_url(url: str, proxy: TcpProxy) -> str:
    """`url` with its server replaced by `proxy` (user, password, database and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{proxy.host}:{proxy.port}"
    if credentials:
        netloc = f"{credentials}@{netloc}"
    query = [(key, value) for key, value in parse_qsl(parts.query) if key not in {"host", "port"}]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))
