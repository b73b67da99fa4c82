"""The claim keeps its plan when the statistics are wrong.

A fresh database, or a bulk insert that autovacuum has not analyzed yet, is exactly what a
new user and a big enqueue produce: the planner then believes the queue holds a handful of
rows. EXPLAIN cannot look inside a function, so the test plans the statement that
`notifyd.claim()` runs, taken from the catalog, with and without the function's settings.
"""

from __future__ import annotations

import uuid

import asyncpg

from notifyd.db.connection import SERVER_SETTINGS
from notifyd.db.queue import EXTEND_LEASES, RECORD_ATTEMPTS

CLAIM_FUNCTION = "notifyd.claim(integer, uuid, double precision)"


async def stale_backlog(database_url: str, count: int) -> asyncpg.Connection:
    """A connection like the daemon's, to a queue analyzed empty and then filled."""
    connection = await asyncpg.connect(database_url, server_settings=SERVER_SETTINGS)
    await connection.execute("ALTER TABLE notifyd.notifications SET (autovacuum_enabled = off)")
    user_id = await connection.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    await connection.execute("VACUUM ANALYZE notifyd.notifications")
    await connection.execute(
        """
        INSERT INTO notifyd.notifications (user_id, message, channels)
        SELECT $1, 'm' || g, ARRAY['sms'] FROM generate_series(1, $2) AS g
        """,
        user_id,
        count,
    )
    return connection


async def claim_statement(connection: asyncpg.Connection) -> tuple[str, list[str]]:
    """The statement the function EXECUTEs ($1..$3 are its arguments), and its settings."""
    row = await connection.fetchrow(
        f"SELECT prosrc, proconfig FROM pg_proc WHERE oid = '{CLAIM_FUNCTION}'::regprocedure"
    )
    assert row is not None
    statement = row["prosrc"].split("$claim$")[1]
    return statement, list(row["proconfig"] or [])


async def plan(connection: asyncpg.Connection, statement: str, settings: list[str]) -> str:
    async with connection.transaction():
        for setting in settings:
            name, _, value = setting.partition("=")
            await connection.execute("SELECT set_config($1, $2, true)", name, value)
        rows = await connection.fetch(f"EXPLAIN {statement}", 250, uuid.uuid4(), 30.0)
    return "\n".join(row[0] for row in rows)


async def test_claim_walks_the_pending_index_in_order_even_with_stale_statistics(
    database_url: str,
) -> None:
    connection = await stale_backlog(database_url, 20_000)
    try:
        statement, settings = await claim_statement(connection)
        assert sorted(settings) == ["enable_bitmapscan=off", "enable_sort=off"]

        # The trap is there: left to itself, the planner reads every pending row and sorts
        # (so on the embedded PostgreSQL 16; another version may plan otherwise).
        unguarded = await plan(connection, statement, [])
        if connection.get_server_version().major == 16:
            assert "Sort" in unguarded, unguarded

        guarded = await plan(connection, statement, settings)
        assert "Index Scan using notifications_pending_idx" in guarded, guarded
        assert "Sort" not in guarded, guarded
        assert "Bitmap" not in guarded, guarded
    finally:
        await connection.close()


async def test_claim_function_leases_the_most_urgent_rows_first(
    database_url: str,
) -> None:
    connection = await stale_backlog(database_url, 300)
    try:
        await connection.execute(
            "UPDATE notifyd.notifications SET priority = 5 WHERE id IN (17, 250)"
        )
        owner = uuid.uuid4()
        rows = await connection.fetch("SELECT * FROM notifyd.claim(3, $1, 30)", owner)
        assert sorted(row["id"] for row in rows) == [1, 17, 250]
        assert {row["phone"] for row in rows} == {"+79001234567"}
        leased = await connection.fetchval(
            "SELECT count(*) FROM notifyd.notifications "
            "WHERE status = 'processing' AND locked_by = $1 AND claims = 1",
            owner,
        )
        assert leased == 3
    finally:
        await connection.close()


async def test_attempt_writes_and_lease_renewals_never_walk_the_table(
    database_url: str,
) -> None:
    """Locking the batch's rows first (to skip those another transaction holds) must not
    turn the write into a walk of the table, analyzed or not."""
    connection = await stale_backlog(database_url, 20_000)
    owner = uuid.uuid4()
    try:
        await connection.execute("ANALYZE notifyd.notifications")
        claimed = await connection.fetch("SELECT id FROM notifyd.claim(250, $1, 30)", owner)
        ids = [row["id"] for row in claimed]
        now = await connection.fetchval("SELECT date_part('epoch', now())")
        half = len(ids) // 2
        write = [
            owner,
            ids,
            [(i, "sms", 1, "success", None, None, None, now, now, 1) for i in ids],
            ids[:half],
            [],
            ids[half:],
        ]
        # The write by primary key; the renewal may walk the partial index of rows in
        # flight (bounded by what the instances hold), never the table.
        for statement, args, index in (
            (RECORD_ATTEMPTS, write, "notifications_pkey"),
            (EXTEND_LEASES, [owner, ids, 30.0, 0.0], "notifications_"),
        ):
            async with connection.transaction():
                rows = await connection.fetch(f"EXPLAIN {statement}", *args)
            shown = "\n".join(row[0] for row in rows)
            assert "Seq Scan on notifications " not in shown, shown
            assert f"Index Scan using {index}" in shown, shown
            # The rows the lock found are updated where they are, not looked up again.
            assert "Tid Scan on notifications" in shown, shown
    finally:
        await connection.close()
