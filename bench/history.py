"""Scenario 7: years of history. The same measurements on an empty database and on one
holding `--history-rows` finished notifications (two years of them) with three attempts
each: the drain, enqueue-to-sent latency, the API's list and get, the dashboard page, and
a retention pass, then what that pass leaves behind (bloat).

The history is loaded with `INSERT ... SELECT generate_series` and then vacuumed and
analyzed, as autovacuum would have done long before. The retention pass runs notifyd's own
prune statement (copied here: the harness never imports notifyd) in batches of
`retention.batch_size` rows, without the daemon's pause between batches, whose cost is
added back in the report.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Final

import aiohttp
import asyncpg

from bench.harness import Bench, percentile, stop_all
from bench.latency import _paced_inserts
from bench.report import Figure
from bench.tables import NOTIFYD

DAYS: Final = 730
DRAIN: Final = 20_000
LATENCY_RATE: Final = 50.0
REQUESTS: Final = 30
# What notifyd's retention deletes per statement (retention.batch_size) and waits between.
PRUNE_BATCH: Final = 1000
PRUNE_PAUSE: Final = 0.05
# How much of the oldest history the measured retention pass deletes.
RETENTION_PASS_DAYS: Final = 30

# Finished notifications spread evenly over the last DAYS days, 1 in 20 failed.
LOAD_NOTIFICATIONS: Final = """
    INSERT INTO notifyd.notifications
        (user_id, subject, message, channels, status, run_after, claims,
         created_at, updated_at, finished_at)
    SELECT 1 + (g % $2), 'old', 'an old message ' || g, ARRAY['email', 'sms'],
           CASE WHEN g % 20 = 0 THEN 'failed' ELSE 'sent' END, t, 1,
           t, t + interval '2 seconds', t + interval '2 seconds'
    FROM generate_series(1, $1) AS g,
         LATERAL (SELECT now() - make_interval(days => $3)
                         + (g::float8 / $1) * make_interval(days => $3 - 1) AS t) AS s
"""
# Three attempts each: two failed e-mails, then the SMS.
LOAD_ATTEMPTS: Final = """
    INSERT INTO notifyd.notification_attempts
        (notification_id, channel, attempt, status, error, transient, started_at, finished_at)
    SELECT n.id, CASE WHEN a < 3 THEN 'email' ELSE 'sms' END, CASE WHEN a < 3 THEN a ELSE 1 END,
           CASE WHEN a < 3 THEN 'failed' ELSE 'success' END,
           CASE WHEN a < 3 THEN 'SMTP connection failed: the server did not answer' END,
           CASE WHEN a < 3 THEN true END,
           n.created_at + a * interval '500 ms',
           n.created_at + a * interval '500 ms' + interval '9 ms'
    FROM notifyd.notifications AS n, generate_series(1, 3) AS a
    WHERE n.id BETWEEN $1 AND $2
"""
# notifyd/db/retention.py: PRUNE_NOTIFICATIONS.
PRUNE_NOTIFICATIONS: Final = """
    DELETE FROM notifyd.notifications
    WHERE id IN (
        SELECT id FROM notifyd.notifications
        WHERE finished_at < now() - make_interval(secs => $1)
        ORDER BY finished_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
VACUUM_ANALYZE: Final = "VACUUM (ANALYZE) notifyd.notifications, notifyd.notification_attempts"
SIZES: Final = """
    SELECT c.relname, pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS heap,
           s.n_live_tup, s.n_dead_tup
    FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid
    WHERE s.schemaname = 'notifyd'
      AND c.relname IN ('notifications', 'notification_attempts')
"""
FREE_SPACE: Final = """
    SELECT round(free_percent::numeric, 1) AS free_percent,
           round(dead_tuple_percent::numeric, 1) AS dead_percent
    FROM pgstattuple($1::regclass)
"""


async def scenario_history(bench: Bench) -> list[Figure]:
    """Both databases first, the history loaded; then the two measured back to back, so
    that a shared machine's load, which moves over the minutes a load takes, weighs on
    both alike."""
    rows = bench.params.history_rows
    empty_name, empty_url, _ = await bench.setup("history-empty", lambda _url: [])
    full_name, full_url, _ = await bench.setup(f"history-{rows}", lambda _url: [])
    try:
        loaded = await _load(bench, full_url, rows)
        # The load's dirty pages written out now, not during the measurements.
        await bench.pg.checkpoint()
        empty = await _measure(bench, empty_url, 0)
        full = loaded | await _measure(bench, full_url, rows)
        full |= await _retention(full_url)
    finally:
        await bench.pg.drop_database(empty_name)
        await bench.pg.drop_database(full_name)
    bench.log(
        f"  retention: {full['pruned']:,} in {full['prune_seconds']} s "
        f"({full['prune_per_second']}/s, {full['prune_per_second_with_pause']}/s with the pause)"
    )
    name = f"{rows:,} finished"
    figures = [
        Figure("history", f"drain {DRAIN:,}, {name}", "notif/s", full["drain_per_second"],
               empty["drain_per_second"], "empty database"),
        Figure("history", f"latency p99 at {LATENCY_RATE:g}/s, {name}", "ms",
               full["latency_p99_ms"], empty["latency_p99_ms"], "empty database"),
        Figure("history", f"GET /api/notifications p99, {name}", "ms",
               full["list_p99_ms"], empty["list_p99_ms"], "empty database"),
        Figure("history", f"GET /api/notifications?status=failed p99, {name}", "ms",
               full["list_failed_p99_ms"], empty["list_failed_p99_ms"], "empty database"),
        Figure("history", f"GET /api/notifications?status=pending p99, {name}", "ms",
               full["list_pending_p99_ms"], empty["list_pending_p99_ms"], "empty database"),
        Figure("history", f"GET /api/notifications/{{id}} p99, {name}", "ms",
               full["get_p99_ms"], empty["get_p99_ms"], "empty database"),
        Figure("history", f"dashboard page p99, {name}", "ms",
               full["dashboard_p99_ms"], empty["dashboard_p99_ms"], "empty database"),
        Figure("history", f"retention, {RETENTION_PASS_DAYS} oldest days of {name}", "notif/s",
               full["prune_per_second"], full["drain_per_second"], "drain rate, same database",
               details=full),
    ]  # fmt: skip
    figures[0].details = {"empty": empty, "history": full}
    return figures


async def _measure(bench: Bench, url: str, rows: int) -> dict[str, Any]:
    label = f"history-{rows}"
    result: dict[str, Any] = {"history_rows": rows}
    # Retention off while measuring: the pass is measured on its own, after.
    child = bench.daemon(label, url, env={"NOTIFYD_RETENTION__DAYS": "0"})()
    await child.start()
    try:
        connection = await asyncpg.connect(url)
        try:
            await asyncio.sleep(1.0)  # the first claim round and the pool settle
            result |= await _drain(connection)
            params = bench.params
            result |= await _latency(connection, params.users, params.latency_duration)
            result |= await _requests(child.extra["port"], connection)
        finally:
            await connection.close()
    finally:
        await stop_all([child])
    bench.log(f"  {label}: {_summary(result)}")
    return result


async def _load(bench: Bench, url: str, rows: int) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        chunk = 1_000_000
        for first in range(0, rows, chunk):
            await connection.execute(
                LOAD_NOTIFICATIONS, min(chunk, rows - first), bench.params.users, DAYS
            )
        loaded_notifications = time.monotonic()
        low, high = await connection.fetchrow("SELECT min(id), max(id) FROM notifyd.notifications")
        for first in range(low, high + 1, chunk):
            await connection.execute(LOAD_ATTEMPTS, first, min(first + chunk - 1, high))
        loaded_attempts = time.monotonic()
        await connection.execute(VACUUM_ANALYZE)
        vacuumed = time.monotonic()
        sizes = await _sizes(connection)
    finally:
        await connection.close()
    bench.log(
        f"  loaded {rows:,} notifications in {loaded_notifications - started:.0f} s, "
        f"{3 * rows:,} attempts in {loaded_attempts - loaded_notifications:.0f} s, "
        f"vacuumed in {vacuumed - loaded_attempts:.0f} s"
    )
    return {
        "load_notifications_seconds": round(loaded_notifications - started, 1),
        "load_attempts_seconds": round(loaded_attempts - loaded_notifications, 1),
        "vacuum_seconds": round(vacuumed - loaded_attempts, 1),
        "sizes_loaded": sizes,
    }


async def _drain(connection: asyncpg.Connection) -> dict[str, Any]:
    first_id = await connection.fetchval(NOTIFYD.max_id)
    async with connection.transaction():
        await connection.execute(NOTIFYD.insert_series, DRAIN, 1000, ["sms"])
    committed = await connection.fetchval("SELECT clock_timestamp()")
    deadline = time.monotonic() + 120 + DRAIN / 100
    while True:
        done = await connection.fetchval(
            "SELECT count(*) FROM notifyd.notifications"
            " WHERE id > $1 AND status IN ('sent', 'failed')",
            first_id,
        )
        if done >= DRAIN:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done:,} of {DRAIN:,} finished")
        await asyncio.sleep(0.2)
    last = await connection.fetchval(
        "SELECT max(finished_at) FROM notifyd.notifications WHERE id > $1", first_id
    )
    seconds = max((last - committed).total_seconds(), 1e-6)
    return {"drain_per_second": round(DRAIN / seconds, 1)}


async def _latency(connection: asyncpg.Connection, users: int, duration: float) -> dict[str, Any]:
    first_id = await connection.fetchval(NOTIFYD.max_id)
    inserted = await _paced_inserts(connection, NOTIFYD, LATENCY_RATE, duration, users, 0.02)
    deadline = time.monotonic() + 60
    while True:
        done = await connection.fetchval(
            "SELECT count(*) FROM notifyd.notifications WHERE id > $1 AND status = 'sent'",
            first_id,
        )
        if done >= inserted or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    values = [float(row["ms"]) for row in await connection.fetch(NOTIFYD.latencies, first_id)]
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {
        "latency_p50_ms": None if p50 is None else round(p50, 2),
        "latency_p99_ms": None if p99 is None else round(p99, 2),
        "latency_samples": len(values),
    }


async def _requests(port: int, connection: asyncpg.Connection) -> dict[str, Any]:
    """The API's list (newest first, and filtered), get of old rows, the dashboard page."""
    low, high = await connection.fetchrow("SELECT min(id), max(id) FROM notifyd.notifications")
    picker = random.Random(7)
    base = f"http://127.0.0.1:{port}"
    timings: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(REQUESTS):
            paths = {
                # Newest first; the failed ones (1 in 20); the pending ones (few or none).
                "list": "/api/notifications?limit=50",
                "list_failed": "/api/notifications?limit=50&status=failed",
                "list_pending": "/api/notifications?limit=50&status=pending",
                "get": f"/api/notifications/{picker.randint(low, high)}",
                "dashboard": "/admin/",
            }
            for kind, path in paths.items():
                started = time.perf_counter()
                async with session.get(base + path) as response:
                    await response.read()
                    if response.status not in (200, 404):
                        raise RuntimeError(f"{path}: {response.status}")
                timings.setdefault(kind, []).append(1000 * (time.perf_counter() - started))
    result: dict[str, Any] = {}
    for kind, values in timings.items():
        values.sort()
        result[f"{kind}_p50_ms"] = round(percentile(values, 50) or 0, 2)
        result[f"{kind}_p99_ms"] = round(percentile(values, 99) or 0, 2)
    return result


async def _retention(url: str) -> dict[str, Any]:
    """Delete the oldest days as notifyd's pruner would; then the sizes, before and after
    a plain VACUUM (the space is reused, not given back)."""
    keep_seconds = (DAYS - RETENTION_PASS_DAYS) * 86400.0
    connection = await asyncpg.connect(url)
    try:
        before = await _sizes(connection)
        deleted = 0
        batches = 0
        started = time.monotonic()
        while True:
            status = await connection.execute(PRUNE_NOTIFICATIONS, keep_seconds, PRUNE_BATCH)
            count = int(status.split()[-1])
            deleted += count
            batches += 1
            if count < PRUNE_BATCH:
                break
        elapsed = time.monotonic() - started
        after = await _sizes(connection)
        vacuum_started = time.monotonic()
        await connection.execute("VACUUM notifyd.notifications, notifyd.notification_attempts")
        vacuum_seconds = time.monotonic() - vacuum_started
        vacuumed = await _sizes(connection)
        free = await _free_space(connection)
    finally:
        await connection.close()
    per_batch = elapsed / batches
    return {
        "pruned": deleted,
        "prune_seconds": round(elapsed, 2),
        "prune_per_second": round(deleted / elapsed, 1) if elapsed else None,
        # notifyd waits PRUNE_PAUSE between full batches: its own ceiling.
        "prune_per_second_with_pause": round(PRUNE_BATCH / (per_batch + PRUNE_PAUSE), 1),
        "prune_batch_ms": round(1000 * per_batch, 2),
        "vacuum_after_prune_seconds": round(vacuum_seconds, 1),
        "sizes_before_prune": before,
        "sizes_after_prune": after,
        "sizes_after_vacuum": vacuumed,
        "free_space": free,
    }


async def _sizes(connection: asyncpg.Connection) -> dict[str, dict[str, int]]:
    return {
        row["relname"]: {
            "total_mb": round(row["total"] / 2**20),
            "heap_mb": round(row["heap"] / 2**20),
            "live": row["n_live_tup"],
            "dead": row["n_dead_tup"],
        }
        for row in await connection.fetch(SIZES)
    }


async def _free_space(connection: asyncpg.Connection) -> dict[str, Any]:
    """pgstattuple's free and dead share of each table, if the extension is there."""
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    except asyncpg.PostgresError as exc:
        return {"unavailable": str(exc)}
    found: dict[str, Any] = {}
    for table in ("notifyd.notifications", "notifyd.notification_attempts"):
        row = await connection.fetchrow(FREE_SPACE, table)
        found[table] = dict(row) if row is not None else None
    return found


def _summary(result: dict[str, Any]) -> str:
    parts = [
        f"drain {result.get('drain_per_second')}/s",
        f"latency p99 {result.get('latency_p99_ms')} ms",
        f"list p99 {result.get('list_p99_ms')} ms",
        f"failed {result.get('list_failed_p99_ms')} ms",
        f"pending {result.get('list_pending_p99_ms')} ms",
        f"get p99 {result.get('get_p99_ms')} ms",
        f"dashboard p99 {result.get('dashboard_p99_ms')} ms",
    ]
    return ", ".join(parts)
