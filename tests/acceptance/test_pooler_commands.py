"""The `notifyd` command behind a real PgBouncer in transaction mode: check-config, migrate."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.test_cli import run_notifyd
from tests.conftest import EmptyDatabase
from tests.pgbouncer import PgBouncer

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(120)]

# Everything but the database checked quickly: no SMTP on the default port is "skipped".
QUIET = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": "1"}


async def test_check_config_names_the_pooler_and_the_missing_listen_url(
    tmp_path: Path, database_url: str, pgbouncer: PgBouncer
) -> None:
    env = {"DATABASE_URL": pgbouncer.url_for(database_url)}
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert "connected to a transaction pooler (detected)" in result.line("database")
    assert "migrations up to date" in result.line("database")
    listener = result.line("listener")
    assert listener.split()[1] == "skipped"
    assert "poll-only" in listener
    assert "NOTIFYD_DATABASE__LISTEN_URL" in listener


async def test_check_config_tries_the_listen_url_as_a_session_of_its_own(
    tmp_path: Path, database_url: str, pgbouncer: PgBouncer
) -> None:
    env = {
        "DATABASE_URL": pgbouncer.url_for(database_url),
        "NOTIFYD_DATABASE__LISTEN_URL": database_url,
    }
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    listener = result.line("listener")
    assert listener.split()[1] == "ok", result.stdout
    assert "a session of its own" in listener


async def test_check_config_fails_a_listen_url_that_reaches_the_pooler(
    tmp_path: Path, database_url: str, pgbouncer: PgBouncer
) -> None:
    pooled = pgbouncer.url_for(database_url)
    env = {"DATABASE_URL": pooled, "NOTIFYD_DATABASE__LISTEN_URL": pooled}
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert result.code == 1, result
    listener = result.line("listener")
    assert listener.split()[1] == "failed"
    assert "reaches a connection pooler, not PostgreSQL" in listener


async def test_check_config_fails_a_pooled_listen_url_whatever_database_pooler_says(
    tmp_path: Path, database_url: str, pgbouncer: PgBouncer
) -> None:
    # `database.pooler` says what `database.url` reaches, not what the listen URL does.
    env = {
        "DATABASE_URL": database_url,
        "NOTIFYD_DATABASE__POOLER": "session",
        "NOTIFYD_DATABASE__LISTEN_URL": pgbouncer.url_for(database_url),
    }
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert result.code == 1, result
    listener = result.line("listener")
    assert listener.split()[1] == "failed"
    assert "reaches a connection pooler, not PostgreSQL" in listener


async def test_check_config_on_a_direct_url_listens_there(
    tmp_path: Path, database_url: str
) -> None:
    result = await run_notifyd("check-config", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert "connected to PostgreSQL itself (detected)" in result.line("database")
    assert result.line("listener").split()[1] == "ok"


async def test_migrate_through_the_pooler_twice_and_nothing_is_left_locked(
    tmp_path: Path, empty_database: EmptyDatabase, pgbouncer: PgBouncer
) -> None:
    direct = await empty_database()
    env = {"DATABASE_URL": pgbouncer.url_for(direct)}
    first = await run_notifyd("migrate", env=env, cwd=tmp_path)
    assert first.code == 0, first
    assert "migration_applied" in first.stdout
    second = await run_notifyd("migrate", env=env, cwd=tmp_path)
    assert second.code == 0, second
    connection = await asyncpg.connect(direct)
    try:
        locks = await connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
    finally:
        await connection.close()
    assert locks == 0


async def test_check_config_fails_a_listen_url_naming_another_database(
    tmp_path: Path, database_url: str, empty_database: EmptyDatabase
) -> None:
    env = {"DATABASE_URL": database_url, "NOTIFYD_DATABASE__LISTEN_URL": await empty_database()}
    result = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert result.code == 1, result
    listener = result.line("listener")
    assert listener.split()[1] == "failed"
    assert "names database" in listener
