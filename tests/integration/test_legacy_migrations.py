"""A database built by the migrations squashed into the baseline keeps working.

Its ledger lists 0001_initial to 0008_message_checked_when_written; `migrate` rewrites it to
list 0001_schema, changes nothing else, and the daemon delivers on it. A ledger holding part
of that chain is refused with advice, and left as it is.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.db import Database
from notifyd.db.migrations import LEGACY_CHAIN, load_migrations, migrate, schema_status
from notifyd.errors import MigrationError
from tests.conftest import EmptyDatabase
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.schema import LEGACY_MIGRATIONS, dump_schema, migrate_database
from tests.support import start_daemon

LEDGER = "SELECT version, name, applied_at FROM notifyd.schema_migrations ORDER BY version"
# The migrations that came after the baseline: applied to a database the chain built, too.
AFTER = [m for m in load_migrations() if m.version > 1]
BASELINE_AND_AFTER = [(1, "0001_schema"), *((m.version, m.name) for m in AFTER)]


async def ledger(url: str) -> list[tuple[int, str, datetime]]:
    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(LEDGER)]
    finally:
        await connection.close()


async def fill(url: str) -> None:
    """Rows of every kind, as an early deployment would hold them."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """
            INSERT INTO notifyd.users (id, email, phone) OVERRIDING SYSTEM VALUE
            VALUES (1, 'a@example.com', '+15551234567');
            -- Delivered before the upgrade, with its attempt.
            INSERT INTO notifyd.notifications (id, user_id, message, channels, status, finished_at)
            OVERRIDING SYSTEM VALUE VALUES (1, 1, 'delivered', ARRAY['sms'], 'sent', now());
            INSERT INTO notifyd.notification_attempts
                (notification_id, channel, attempt, status, started_at, finished_at)
            VALUES (1, 'sms', 1, 'success', now(), now());
            -- Still waiting when the old notifyd stopped.
            INSERT INTO notifyd.notifications (id, user_id, message, channels)
            OVERRIDING SYSTEM VALUE VALUES (2, 1, 'waiting', ARRAY['sms']);
            SELECT setval(pg_get_serial_sequence('notifyd.notifications', 'id'), 2);
            INSERT INTO notifyd.idempotency_keys (key, fingerprint, notification_id)
            VALUES ('k', '\\x00', 1);
            """
        )
    finally:
        await connection.close()


async def rows(url: str) -> list[list[asyncpg.Record]]:
    connection = await asyncpg.connect(url)
    try:
        return [
            await connection.fetch(f"SELECT * FROM notifyd.{table} ORDER BY 1, 2")
            for table in ("users", "notifications", "notification_attempts", "idempotency_keys")
        ]
    finally:
        await connection.close()


def as_before(
    after: list[list[asyncpg.Record]], before: list[list[asyncpg.Record]]
) -> list[list[dict[str, object]]]:
    """`after`'s rows with only the columns `before`'s had; both as dicts."""
    projected = []
    for new_rows, old_rows in zip(after, before, strict=True):
        columns = list(old_rows[0].keys()) if old_rows else []
        projected.append([{c: row[c] for c in columns} for row in new_rows])
    return projected


@pytest.fixture
async def chain_database(empty_database: EmptyDatabase) -> str:
    """A database the squashed chain built, with rows in it."""
    url = await empty_database()
    assert await migrate_database(url, LEGACY_MIGRATIONS) == list(LEGACY_CHAIN.values())
    await fill(url)
    return url


async def partial_chain_database(
    empty_database: EmptyDatabase, tmp_path: Path, applied: int
) -> str:
    """A database the first `applied` migrations of the chain built."""
    directory = tmp_path / "partial"
    directory.mkdir()
    for path in sorted(LEGACY_MIGRATIONS.glob("*.sql"))[:applied]:
        shutil.copy(path, directory)
    url = await empty_database()
    await migrate_database(url, directory)
    return url


def test_the_kept_chain_is_the_one_recognised() -> None:
    chain = {m.version: m.name for m in load_migrations(LEGACY_MIGRATIONS)}
    assert chain == LEGACY_CHAIN


async def test_migrate_records_the_baseline_in_place_of_the_chain(
    chain_database: str, database_url: str
) -> None:
    before = await ledger(chain_database)
    data = await rows(chain_database)

    with capture_logs() as logs:
        applied = await migrate_database(chain_database)

    # The baseline is not applied but recorded, with the time the chain was completed;
    # only what came after it is applied.
    assert applied == [m.name for m in AFTER]
    assert [(v, n) for v, n, _ in await ledger(chain_database)] == BASELINE_AND_AFTER
    assert (await ledger(chain_database))[0][2] == max(at for _, _, at in before)
    recognised = [entry for entry in logs if entry["event"] == "legacy_migrations_recognised"]
    assert recognised == [
        {
            "event": "legacy_migrations_recognised",
            "log_level": "info",
            "module": "notifyd.db.migrations",
            "replaced": list(LEGACY_CHAIN.values()),
            "recorded": "0001_schema",
        }
    ]
    assert [e["migration"] for e in logs if e["event"] == "migration_applied"] == applied
    # The rows are untouched (columns added later aside), and the schema is the
    # baseline's (and what came after).
    assert as_before(await rows(chain_database), data) == [
        [dict(row) for row in table] for table in data
    ]
    assert await dump_schema(chain_database) == await dump_schema(database_url)
    # And the next start finds nothing to do.
    with capture_logs() as logs:
        assert await migrate_database(chain_database) == []
    assert logs == []


async def test_schema_status_counts_the_chain_as_the_baseline_without_writing(
    chain_database: str,
) -> None:
    database = await Database.connect(chain_database, min_size=1, max_size=1)
    try:
        status = await schema_status(database.pool)
    finally:
        await database.close()

    # Up to date but for what came after the baseline (send, status and users ask for
    # `migrate` then), never "migrated by a newer notifyd".
    assert status.applied == frozenset({1})
    assert status.pending == tuple(AFTER)
    assert status.unknown == frozenset()
    assert status.recognised_as == "0001_schema"
    assert [name for _, name, _ in await ledger(chain_database)] == list(LEGACY_CHAIN.values())


async def test_instances_starting_together_record_the_baseline_once(
    chain_database: str,
) -> None:
    stores = [await Database.connect(chain_database, min_size=1, max_size=1) for _ in range(4)]
    try:
        with capture_logs() as logs:
            results = await asyncio.gather(*(migrate(database.pool) for database in stores))
    finally:
        for database in stores:
            await database.close()

    assert sorted(results, key=len) == [[], [], [], [m.name for m in AFTER]]
    events = [e["event"] for e in logs]
    assert events == ["legacy_migrations_recognised"] + ["migration_applied"] * len(AFTER)
    assert [(v, n) for v, n, _ in await ledger(chain_database)] == BASELINE_AND_AFTER


async def test_the_daemon_delivers_on_a_database_the_chain_built(
    chain_database: str, smtp_server: FakeSmtpServer, telegram_api: FakeTelegramApi
) -> None:
    daemon = await start_daemon(chain_database, smtp_server, telegram_api)
    try:
        # The notification left waiting by the old notifyd is delivered...
        waiting = await daemon.wait_finished(2)
        assert waiting["status"] == "sent"
        # ...and new ones, through the API and through SQL, get ids after the old rows'.
        sent = await daemon.notify(user_id=1, message="after the upgrade", channels=["sms"])
        assert sent["id"] == 3
        assert (await daemon.wait_finished(sent["id"]))["status"] == "sent"
        connection = await asyncpg.connect(chain_database)
        try:
            by_sql = await connection.fetchval(
                "SELECT notifyd.enqueue(1, 'from SQL', '', ARRAY['email'], NULL, 5::smallint)"
            )
        finally:
            await connection.close()
        assert (await daemon.wait_finished(by_sql))["status"] == "sent"
        assert [m.get_content().strip() for m in smtp_server.messages] == ["from SQL"]
        delivered = await daemon.notification(1)
        assert [a["channel"] for a in delivered["attempts"]] == ["sms"]
    finally:
        await daemon.close()
    assert [(v, n) for v, n, _ in await ledger(chain_database)] == BASELINE_AND_AFTER


@pytest.mark.parametrize("applied", [1, 5, 7])
async def test_part_of_the_chain_is_refused_and_left_as_it_is(
    empty_database: EmptyDatabase, tmp_path: Path, applied: int
) -> None:
    url = await partial_chain_database(empty_database, tmp_path, applied)
    before_ledger = await ledger(url)
    before_schema = await dump_schema(url)
    names = list(LEGACY_CHAIN.values())

    database = await Database.connect(url, min_size=1, max_size=1)
    try:
        with pytest.raises(MigrationError) as refused:
            await migrate(database.pool)
        with pytest.raises(MigrationError) as status_refused:
            await schema_status(database.pool)
    finally:
        await database.close()

    message = str(refused.value)
    assert f"applied {', '.join(names[:applied])};" in message
    assert f"missing {', '.join(names[applied:])}:" in message
    assert "DROP SCHEMA notifyd CASCADE" in message
    assert "notifyd migrate" in message
    assert str(status_refused.value) == message
    # Never half-applied: neither the baseline nor the rest of the chain.
    assert await ledger(url) == before_ledger
    assert await dump_schema(url) == before_schema


async def test_the_chain_with_more_after_it_is_refused(chain_database: str) -> None:
    connection = await asyncpg.connect(chain_database)
    try:
        await connection.execute(
            "INSERT INTO notifyd.schema_migrations (version, name) VALUES (9, '0009_local')"
        )
    finally:
        await connection.close()

    database = await Database.connect(chain_database, min_size=1, max_size=1)
    try:
        with pytest.raises(MigrationError, match="also 0009_local"):
            await migrate(database.pool)
    finally:
        await database.close()
    assert len(await ledger(chain_database)) == 9


async def test_a_database_the_baseline_built_is_not_mistaken_for_the_chain(
    database_url: str,
) -> None:
    database = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        status = await schema_status(database.pool)
    finally:
        await database.close()
    assert status.recognised_as is None
    assert status.pending == ()
    assert [(v, n) for v, n, _ in await ledger(database_url)] == BASELINE_AND_AFTER
