"""`notifyd serve` as a user runs it: a subprocess driven over HTTP and SQL."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from tests.acceptance.daemon_process import DaemonProcess, free_port
from tests.fakes.smtp import FakeSmtpServer
from tests.support import wait_until

pytestmark = pytest.mark.acceptance

Launcher = Callable[..., Awaitable[DaemonProcess]]
CURL_BODY = {
    "user_id": 1,
    "subject": "Привет!",
    "message": "Тестовое уведомление",
    "channels": ["email", "sms", "telegram"],
}


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launcher]:
    started: list[DaemonProcess] = []

    async def launcher(*args: str, env: dict[str, str], ready: bool = True) -> DaemonProcess:
        daemon = DaemonProcess(list(args) or ["serve"], env, cwd=tmp_path)
        started.append(daemon)
        await daemon.start()
        if ready:
            await daemon.wait_for_event("notifyd_started", deadline=60)
        return daemon

    yield launcher
    for daemon in started:
        await daemon.stop()


async def get_json(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        data: dict[str, object] = await response.json()
        return data


async def test_serve_answers_the_curl_example_and_logs_json(
    launch: Launcher, database_url: str, smtp_server: FakeSmtpServer
) -> None:
    port = free_port()
    daemon = await launch(
        "serve",
        env={
            "DATABASE_URL": database_url,
            "NOTIFYD_HTTP__PORT": str(port),
            "EMAIL_HOST": smtp_server.host,
            "EMAIL_PORT": str(smtp_server.port),
            "TELEGRAM_BOT_TOKEN": "123:secret-token-never-logged",
        },
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/users/", json={"email": "ivan@example.com"}) as r:
            assert r.status == 201
            assert (await r.json())["id"] == 1
        async with session.post(f"{base}/api/notify/", json=CURL_BODY) as r:
            assert r.status == 200
            created = await r.json()
        assert created["status"] == "pending"

        async def finished() -> dict[str, object] | None:
            data = await get_json(session, f"{base}/api/notifications/{created['id']}")
            return data if data["status"] in {"sent", "failed"} else None

        notification = await wait_until(finished, deadline=20, what="delivery")
    assert notification["status"] == "sent"
    (mail,) = await smtp_server.wait_for_messages(1)
    assert mail["Subject"] == "Привет!"

    attempt = await daemon.wait_for_event("attempt_finished")
    assert attempt["notification_id"] == created["id"]
    assert attempt["channel"] == "email"
    assert attempt["attempt"] == 1
    assert attempt["status"] == "success"
    assert "duration_ms" in attempt
    await daemon.wait_for_event("notification_sent")

    await daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    events = daemon.events()  # every stdout line is a JSON object
    assert events[-1]["event"] == "notifyd_stopped"
    assert not any("secret-token-never-logged" in line for line in daemon.lines)


async def test_serve_without_a_database_starts_an_embedded_one_that_keeps_its_data(
    launch: Launcher, embedded_home: Path
) -> None:
    port = free_port()
    env = {
        "NOTIFYD_HTTP__PORT": str(port),
        "NOTIFYD_DATABASE__EMBEDDED_DIR": str(embedded_home / "pgdata"),
    }
    base = f"http://127.0.0.1:{port}"
    daemon = await launch("serve", env=env)
    started = next(e for e in daemon.events() if e["event"] == "notifyd_started")
    # uvloop is a dependency wherever it is built, which is everywhere but Windows.
    assert started["event_loop"] == ("asyncio" if sys.platform == "win32" else "uvloop")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/users/", json={"phone": "+15551234567"}) as r:
            assert r.status == 201
            user = await r.json()
        body = {"user_id": user["id"], "message": "hello", "channels": ["sms"]}
        async with session.post(f"{base}/api/notify/", json=body) as r:
            created = await r.json()

        async def sent() -> bool:
            data = await get_json(session, f"{base}/api/notifications/{created['id']}")
            return data["status"] == "sent"

        await wait_until(sent, deadline=20, what="delivery over the embedded database")
        await daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0

        restarted = await launch("serve", env=env)
        assert (await get_json(session, f"{base}/api/users/{user['id']}"))["phone"] == (
            "+15551234567"
        )
        await restarted.signal(signal.SIGTERM)
        assert await restarted.wait() == 0


async def test_migrate_command_applies_the_schema(launch: Launcher, pg_server_url: str) -> None:
    from notifyd.db.migrations import load_migrations
    from tests.databases import database_url_for, drop_database

    name = "notifyd_migrate_" + str(free_port())
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = database_url_for(pg_server_url, name)
        daemon = await launch("migrate", env={"DATABASE_URL": url}, ready=False)
        assert await daemon.wait() == 0
        connection = await asyncpg.connect(url)
        try:
            versions = await connection.fetch(
                "SELECT version FROM notifyd.schema_migrations ORDER BY version"
            )
            expected = [migration.version for migration in load_migrations()]
            assert [row["version"] for row in versions] == expected
            assert expected[0] == 1
            # The schema itself, not only its ledger: the baseline's last object is there.
            assert await connection.fetchval(
                "SELECT to_regprocedure('notifyd.enqueue(bigint, text, text, text[],"
                " timestamptz, smallint)') IS NOT NULL"
            )
        finally:
            await connection.close()
        again = await launch("migrate", env={"DATABASE_URL": url}, ready=False)
        assert await again.wait() == 0
        assert (await again.wait_for_event("migrations_done"))["applied"] == []
    finally:
        await drop_database(admin, name)
        await admin.close()


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"NOTIFYD_HTTP__PORT": "eighty"}, "http.port"),
        ({"NOTIFYD_DELIVERY__MAX_ATTEMPTS": "0"}, "delivery.max_attempts"),
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT"),
        ({"DATABASE_URL": "mysql://db/notifyd"}, "database.url"),
    ],
)
async def test_a_bad_setting_stops_the_daemon_naming_the_key(
    launch: Launcher, env: dict[str, str], key: str
) -> None:
    daemon = await launch("serve", env=env, ready=False)
    assert await daemon.wait() == 2
    assert key in daemon.stderr.decode()
    (event,) = daemon.events()
    assert event["event"] == "config_invalid"
    assert key in event["error"]


async def test_a_port_in_use_stops_the_daemon_with_a_clear_error(
    launch: Launcher, database_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = await launch(
            "serve",
            env={"DATABASE_URL": database_url, "NOTIFYD_HTTP__PORT": str(port)},
            ready=False,
        )
        assert await daemon.wait() == 1
    assert f"127.0.0.1:{port}" in daemon.stderr.decode()
    assert "NOTIFYD_HTTP__PORT=" in daemon.stderr.decode()  # how to take another port
    assert "http_bind_failed" in {event["event"] for event in daemon.events()}


async def test_psql_command_runs_sql_on_the_configured_database(
    launch: Launcher, database_url: str
) -> None:
    daemon = await launch(
        "psql",
        "-At",
        "-c",
        "WITH u AS (INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id)"
        " SELECT notifyd.enqueue(u.id, 'hi') FROM u",
        env={"DATABASE_URL": database_url},
        ready=False,
    )
    assert await daemon.wait() == 0
    assert daemon.lines == ["1"]


PSQL_PASSWORD = "psql-Secret-Pa55-wd"


@pytest.mark.parametrize("where", ["userinfo", "query", "query-without-authority"])
async def test_psql_gets_the_password_from_its_environment_not_its_command_line(
    launch: Launcher, database_url: str, where: str
) -> None:
    # A command line is visible to every user of the machine (`ps`, /proc/PID/cmdline).
    parts = urlsplit(database_url)
    query = f"{parts.query}&" if parts.query else ""
    if where == "userinfo":
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit(
            parts._replace(netloc=f"{parts.username or 'postgres'}:{PSQL_PASSWORD}@{host}")
        )
    elif where == "query":
        url = urlunsplit(parts._replace(query=f"{query}password={PSQL_PASSWORD}"))
    else:
        # libpq's usual form for a socket, `postgresql:///db?host=...`: the empty authority
        # must stay (psql reads `postgresql:/db` as a database name, not a URL).
        extra = [f"user={parts.username}"] if parts.username else []
        if parts.hostname:
            extra.append(f"host={parts.hostname}")
        if parts.port:
            extra.append(f"port={parts.port}")
        url = f"postgresql://{parts.path}?{query}{'&'.join(extra)}&password={PSQL_PASSWORD}"
    daemon = await launch(
        "psql",
        "-At",
        "-c",
        # psql's own command line and environment, as its shell escape reads them.
        "\\! tr '\\0' ' ' < /proc/$PPID/cmdline; echo; printenv PGPASSWORD",
        env={"DATABASE_URL": url},
        ready=False,
    )
    assert await daemon.wait() == 0, daemon.stderr.decode()
    command_line, environment = daemon.lines
    assert PSQL_PASSWORD not in command_line
    assert urlsplit(database_url).path in command_line  # the database is still named
    assert environment == PSQL_PASSWORD


async def test_serve_reads_the_file_given_with_config(
    launch: Launcher, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "custom.toml"
    config.write_text(f'[http]\nport = {port}\n\n[log]\nlevel = "warning"\n', "utf-8")
    daemon = await launch(
        "serve", "--config", str(config), env={"DATABASE_URL": database_url}, ready=False
    )
    async with aiohttp.ClientSession() as session:

        async def answering() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(answering, deadline=30, what="the port from the config file")
    await daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    # log.level = warning from the file: the info-level start event is not printed.
    assert "notifyd_started" not in {event["event"] for event in daemon.events()}
