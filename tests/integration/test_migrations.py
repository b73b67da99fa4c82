"""Migrations: applied once, in order, even by instances starting at the same moment."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.db.migrations import load_migrations, migrate
from tests.conftest import EmptyDatabase


@pytest.fixture
async def empty_database_url(empty_database: EmptyDatabase) -> str:
    return await empty_database()


async def test_instances_migrating_at_once_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    stores = [await Database.connect(empty_database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(database.pool) for database in stores))
    finally:
        for database in stores:
            await database.close()
    expected = [m.name for m in load_migrations()]
    # Exactly one instance applied everything; the others waited on the lock and found
    # nothing left to do.
    assert sorted(results, key=len) == [[], [], [], expected]
    connection = await asyncpg.connect(empty_database_url)
    try:
        versions = [
            r["version"]
            for r in await connection.fetch(
                "SELECT version FROM notifyd.schema_migrations ORDER BY version"
            )
        ]
    finally:
        await connection.close()
    assert versions == [m.version for m in load_migrations()]


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def _migrations_before(name: str, into: Path) -> Path:
    """A folder with the migrations that come before the one called `name`."""
    for migration in load_migrations():
        if migration.name.endswith(name):
            break
        (into / f"{migration.name}.sql").write_text(migration.sql, "utf-8")
    else:
        raise AssertionError(f"no migration named {name}")
    return into


async def test_out_of_range_timestamps_already_stored_are_moved_into_the_range(
    empty_database_url: str, tmp_path: Path
) -> None:
    database = await Database.connect(empty_database_url, min_size=1, max_size=1)
    connection = await asyncpg.connect(empty_database_url)
    try:
        await migrate(database.pool, _migrations_before("_sane_timestamps", tmp_path))
        user = await connection.fetchval(
            "INSERT INTO notifyd.users (email, created_at, updated_at)"
            " VALUES ('alice(bob@evil.example)', '-infinity', 'infinity') RETURNING id"
        )
        await connection.execute("INSERT INTO notifyd.users (email) VALUES ('fine@example.com')")
        rows = {}
        for name, columns in {
            "past": "created_at = '4713-01-01 BC', send_at = '-infinity', claims = -3",
            "future": "created_at = '10000-01-01Z', send_at = 'infinity', run_after = 'infinity'",
            "odd": "created_at = '1900-06-01Z', updated_at = '3500-01-01Z'",
        }.items():
            notification = await connection.fetchval(
                "INSERT INTO notifyd.notifications (user_id, message) VALUES ($1, 'm')"
                " RETURNING id",
                user,
            )
            await connection.execute(
                f"UPDATE notifyd.notifications SET {columns} WHERE id = $1", notification
            )
            rows[name] = notification
        await connection.execute(
            "INSERT INTO notifyd.notification_attempts"
            " (notification_id, channel, attempt, status, started_at, finished_at)"
            " VALUES ($1, 'sms', 1, 'failed', '-infinity', 'infinity')",
            rows["odd"],
        )

        with capture_logs() as logs:
            applied = await migrate(database.pool)

        assert [name for name in applied if name.endswith("_sane_timestamps")]
        times = {
            row["id"]: row
            for row in await connection.fetch(
                "SELECT id, created_at::text, updated_at::text, send_at::text, run_after,"
                " claims FROM notifyd.notifications"
            )
        }
        assert times[rows["past"]]["created_at"] == "1970-01-01 00:00:00+00"
        assert times[rows["past"]]["send_at"] == "1970-01-01 00:00:00+00"
        assert times[rows["past"]]["claims"] == 0
        assert times[rows["future"]]["created_at"] == "2999-12-31 23:59:59.999999+00"
        assert times[rows["future"]]["send_at"] == "2999-12-31 23:59:59.999999+00"
        assert times[rows["odd"]]["created_at"] == "1970-01-01 00:00:00+00"
        assert times[rows["odd"]]["updated_at"] == "2999-12-31 23:59:59.999999+00"
        user_times = await connection.fetchrow(
            "SELECT created_at::text, updated_at::text FROM notifyd.users WHERE id = $1", user
        )
        assert tuple(user_times) == ("1970-01-01 00:00:00+00", "2999-12-31 23:59:59.999999+00")
        attempt = await connection.fetchrow(
            "SELECT started_at::text, finished_at::text FROM notifyd.notification_attempts"
        )
        assert tuple(attempt) == ("1970-01-01 00:00:00+00", "2999-12-31 23:59:59.999999+00")
        checks = {
            row["conname"]: row["convalidated"]
            for row in await connection.fetch(
                "SELECT conname, convalidated FROM pg_constraint"
                " WHERE connamespace = 'notifyd'::regnamespace"
                " AND (conname LIKE '%\\_in\\_range' OR conname IN"
                " ('users_email_format', 'notifications_claims_not_negative'))"
            )
        }
        # Every range check holds for every row; the address could not be repaired, so its
        # check applies to what is written from now on.
        assert checks.pop("users_email_format") is False
        # The tables this migration found (later ones bring checks of their own).
        old = ("users_", "notifications_", "attempts_", "idempotency_keys_")
        later = {"notifications_cancel_requested_at_in_range"}  # 0005's column
        checks = {
            name: valid
            for name, valid in checks.items()
            if name.startswith(old) and name not in later
        }
        assert len(checks) == 12
        assert all(checks.values())
        warnings = [entry["message"] for entry in logs if entry["event"] == "migration_warning"]
        assert len(warnings) == 4, warnings
        assert any("1 user(s) had timestamps" in text for text in warnings)
        assert any("3 notification(s)" in text for text in warnings)
        assert any("1 attempt(s)" in text for text in warnings)
        assert any("1 user(s) have an e-mail address" in text for text in warnings)

        # The notifications now read like any other; the one whose send_at was before all
        # time is due, the one after it is not.
        claimed = await database.queue.claim(10, uuid.uuid4(), 30)
        assert {n.id for n in claimed} == {rows["past"], rows["odd"]}
    finally:
        await connection.close()
        await database.close()


async def test_the_address_check_holds_for_every_row_where_every_address_fits(
    empty_database_url: str, tmp_path: Path
) -> None:
    database = await Database.connect(empty_database_url, min_size=1, max_size=1)
    connection = await asyncpg.connect(empty_database_url)
    try:
        await migrate(database.pool, _migrations_before("_sane_timestamps", tmp_path))
        await connection.execute(
            "INSERT INTO notifyd.users (email) VALUES ('a@example.com'), (NULL)"
        )
        with capture_logs() as logs:
            await migrate(database.pool)
        validated = await connection.fetchval(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'users_email_format'"
        )
        assert validated is True
        assert [entry for entry in logs if entry["event"] == "migration_warning"] == []
    finally:
        await connection.close()
        await database.close()
