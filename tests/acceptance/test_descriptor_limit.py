"""With its descriptor limit at 1,024 and 1,500 stalled clients, notifyd still delivers.

`notifyd serve` runs with RLIMIT_NOFILE 1,024 (set in the child before it starts). A crowd
of 1,500 clients connects and sends half a request each, and reconnects whenever it is
dropped, for as long as the test runs. Meanwhile notifications written by SQL go out
over Telegram (a real local HTTP server) and e-mail (a real SMTP server): every one is
sent, and no attempt fails for want of a descriptor. Without the connection cap the
daemon accepts connections until it has no descriptor left, and the vendors' connections
fail with "Too many open files".
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.daemon_process import DaemonProcess, free_port
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.faults.harness import (
    Instance,
    Launcher,
    attempt_log,
    create_users,
    enqueue,
    statuses,
    wait_all_terminal,
)
from tests.support import wait_until

pytestmark = pytest.mark.acceptance

DAEMON_LIMIT = 1024
CLIENTS = 1500
NOTIFICATIONS = 100  # per channel
# The crowd's own descriptors, and the test's: well above CLIENTS.
OWN_LIMIT = 4096


def limit_descriptors() -> None:
    """Run in the daemon's process before it starts."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_LIMIT, DAEMON_LIMIT))


@pytest.fixture
def own_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= OWN_LIMIT:
        return
    if hard != resource.RLIM_INFINITY and hard < OWN_LIMIT:
        pytest.skip(f"needs {OWN_LIMIT} descriptors for the crowd (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (OWN_LIMIT, hard))


class Crowd:
    """Clients that send half a request each and hold on, reconnecting when dropped."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.connected = 0  # held open right now
        self.established = 0  # connections made, in all
        # Connections the daemon ended: with deadlines far off, each one was over its cap
        # (a 503, or a reset when the 503 met the request the client had sent).
        self.dropped = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Crowd:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.size)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.5)  # the kernel's queue was full: try again
                continue
            self.connected += 1
            self.established += 1
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Never-Ends: ")
                await reader.read()  # until the daemon drops this connection
            except OSError:
                pass
            finally:
                self.dropped += 1
                self.connected -= 1
                writer.close()
            # Come back, a little later: the test is about descriptors, not CPU.
            await asyncio.sleep(1.0)


@pytest.fixture
async def daemon(
    tmp_path: Path,
    database_url: str,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
    own_descriptors: None,
) -> AsyncIterator[Instance]:
    launcher = Launcher(tmp_path, database_url, smtp_server, telegram_api)
    try:
        # Long header deadlines: the crowd's connections are held, and only the cap
        # stands between them and the daemon's last descriptor.
        yield await launcher.start(
            {"http.header_timeout": 600, "http.idle_timeout": 600},
            preexec_fn=limit_descriptors,
        )
    finally:
        await launcher.stop_all()


async def test_stalled_clients_cannot_starve_delivery_of_descriptors(
    daemon: Instance,
    db: asyncpg.Connection,
    smtp_server: FakeSmtpServer,
    telegram_api: FakeTelegramApi,
) -> None:
    telegram_users = await create_users(db, NOTIFICATIONS, email=False, telegram_chat_id=1001)
    email_users = await create_users(db, NOTIFICATIONS, phone=False)
    async with Crowd(daemon.port, CLIENTS) as crowd:

        async def crowded() -> bool:
            # More connections than the daemon has descriptors.
            return crowd.established >= DAEMON_LIMIT

        await wait_until(crowded, deadline=60, what=f"{DAEMON_LIMIT} connections made")
        ids = await enqueue(db, telegram_users, ["telegram"], "flood")
        ids += await enqueue(db, email_users, ["email"], "flood")
        await wait_all_terminal(db, ids, deadline=120, what="deliveries under the flood")
        turned_away = crowd.dropped

    attempts = await attempt_log(db, ids)
    assert attempts.total_failures() == 0, [row["error"] for row in attempts.rows][:5]
    assert await statuses(db, ids) == {"sent": 2 * NOTIFICATIONS}
    assert len(telegram_api.sent) == NOTIFICATIONS
    assert len(smtp_server.received) == NOTIFICATIONS
    for line in daemon.process.lines:
        assert "Too many open files" not in line, line
    assert daemon.returncode is None

    # What kept the descriptors: a cap below the limit, reached and held.
    [limit] = daemon.events("http_connection_limit")
    assert limit["descriptor_limit"] == DAEMON_LIMIT
    cap = limit["max_connections"]
    assert cap <= DAEMON_LIMIT - limit["descriptors_reserved"] - limit["descriptors_in_use"]
    assert daemon.events("http_connections_refused")
    assert turned_away > 0
    print(f"DESCRIPTORS: cap {cap} of {DAEMON_LIMIT}, {turned_away} connections turned away")


async def test_a_limit_too_low_for_the_settings_stops_the_daemon_at_start(
    tmp_path: Path, database_url: str
) -> None:
    def tiny_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    process = DaemonProcess(
        ["serve"],
        {"DATABASE_URL": database_url, "NOTIFYD_HTTP__PORT": str(free_port())},
        cwd=tmp_path,
        preexec_fn=tiny_limit,
    )
    await process.start()
    assert await process.wait() == 2
    assert b"RLIMIT_NOFILE 128" in process.stderr
    assert b"ulimit -n" in process.stderr
