"""The bare references: what the same database does with the least code around it.

`python -m bench.baseline loop URL`: a batched delivery loop on notifyd's own tables. Each
worker (one connection each) claims up to 100 pending rows with SKIP LOCKED, inserts their
attempts in one statement, then sets their statuses in one statement: three round trips
per batch. It sleeps on the same LISTEN channel as notifyd when the table runs dry. With
`--failures F` every notification gets F failed e-mail attempts before its SMS success.
With `--schema minimal` the same loop runs on the minimal tables of `bench/minimal.sql`
(no lease columns: a claim sets the status, a finish sets it again), woken by their own
trigger's channel.

`python -m bench.baseline api URL PORT`: an aiohttp + asyncpg endpoint whose
`POST /api/notify/` only inserts the row and answers what notifyd answers.

Neither imports notifyd: the references stay put while notifyd changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

SERVER_SETTINGS: Final = {"timezone": "UTC", "plan_cache_mode": "force_custom_plan"}
# The loop's connections run only its three statements. Without sorts and bitmap scans its
# claim keeps walking the pending index in order when the statistics predate the bulk
# insert (as notifyd's does); otherwise it would read and sort the whole backlog per claim,
# and the reference would understate what the database can do.
LOOP_SETTINGS: Final = {**SERVER_SETTINGS, "enable_sort": "off", "enable_bitmapscan": "off"}

# The claim walks the partial index of pending rows in its own order, whatever the
# migrations made that order: ordered otherwise, every claim would sort the whole backlog.
PENDING_INDEX_ORDER: Final = """
    SELECT substring(indexdef FROM 'USING btree \\((.*)\\) WHERE')
    FROM pg_indexes
    WHERE schemaname = 'notifyd' AND tablename = 'notifications'
      AND indexdef LIKE '%WHERE (status = ''pending''::text)%'
    ORDER BY indexname
    LIMIT 1
"""
CLAIM: Final = """
    WITH picked AS (
        SELECT id FROM notifyd.notifications
        WHERE status = 'pending' AND run_after <= now()
        ORDER BY {order}
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE notifyd.notifications AS n
    SET status = 'processing', locked_by = $2, lease_expires_at = now() + interval '30 s',
        claims = n.claims + 1, updated_at = now()
    FROM picked, notifyd.users AS u
    WHERE n.id = picked.id AND u.id = n.user_id
    RETURNING n.id, u.phone
"""
INSERT_ATTEMPTS: Final = """
    INSERT INTO notifyd.notification_attempts
        (notification_id, channel, attempt, status, error, transient, provider_response,
         started_at, finished_at)
    SELECT r.id, r.channel, r.attempt, r.status, r.error, r.transient, r.response::jsonb,
           r.started_at, r.finished_at
    FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bool[],
                $7::text[], $8::timestamptz[], $9::timestamptz[])
        AS r (id, channel, attempt, status, error, transient, response, started_at,
              finished_at)
"""
FINISH: Final = """
    UPDATE notifyd.notifications
    SET status = 'sent', locked_by = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = ANY($1::bigint[]) AND locked_by = $2
"""
# The same three statements on the minimal tables: the claim walks their pending index (on
# id), nothing records who holds a row, and the provider's answer is stored as text.
MINIMAL_CLAIM: Final = """
    WITH picked AS (
        SELECT id FROM minimal.notifications
        WHERE status = 'pending'
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE minimal.notifications AS n
    SET status = 'processing', updated_at = now()
    FROM picked, minimal.users AS u
    WHERE n.id = picked.id AND u.id = n.user_id
    RETURNING n.id, u.phone
"""
MINIMAL_INSERT_ATTEMPTS: Final = """
    INSERT INTO minimal.attempts
        (notification_id, channel, attempt, status, error, transient, provider_response,
         started_at, finished_at)
    SELECT r.id, r.channel, r.attempt, r.status, r.error, r.transient, r.response,
           r.started_at, r.finished_at
    FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bool[],
                $7::text[], $8::timestamptz[], $9::timestamptz[])
        AS r (id, channel, attempt, status, error, transient, response, started_at,
              finished_at)
"""
MINIMAL_FINISH: Final = """
    UPDATE minimal.notifications
    SET status = 'sent', updated_at = now()
    WHERE id = ANY($1::bigint[]) AND status = 'processing'
"""
INSERT_NOTIFICATION: Final = """
    INSERT INTO notifyd.notifications (user_id, subject, message, channels)
    VALUES ($1, $2, $3, $4)
    RETURNING id, status, created_at
"""
REFUSED: Final = "SMTP connection failed: [Errno 111] Connect call failed ('127.0.0.1', 9)"


def _attempt_rows(claimed: list[asyncpg.Record], failures: int) -> list[list[Any]]:
    """Column arrays for INSERT_ATTEMPTS: `failures` failed e-mails, then one SMS success."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for row in claimed:
        for attempt in range(1, failures + 2):
            now = datetime.now(UTC)
            ok = attempt > failures
            values = (
                row["id"],
                "sms" if ok else "email",
                1 if ok else attempt,
                "success" if ok else "failed",
                None if ok else REFUSED,
                None if ok else True,
                orjson.dumps(
                    {"provider": "stub", "status": "accepted", "to": row["phone"]}
                ).decode()
                if ok
                else None,
                now,
                now,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    return columns


@dataclass(frozen=True)
class Loop:
    """The loop's three statements on one schema, its wake-up channel, and its lease owner.

    `owner` is passed to the claim and the finish where the schema records who holds a
    row (notifyd's), and to neither where it does not (the minimal one).
    """

    claim: str
    insert_attempts: str
    finish: str
    wake_channel: str
    owner: tuple[uuid.UUID, ...]


async def _loop_on(url: str, schema: str) -> Loop:
    if schema == "minimal":
        return Loop(MINIMAL_CLAIM, MINIMAL_INSERT_ATTEMPTS, MINIMAL_FINISH, "minimal_wakeup", ())
    connection = await asyncpg.connect(url)
    try:
        order = await connection.fetchval(PENDING_INDEX_ORDER)
    finally:
        await connection.close()
    claim = CLAIM.format(order=order or "id")
    return Loop(claim, INSERT_ATTEMPTS, FINISH, "notifyd_wakeup", (uuid.uuid4(),))


async def _worker(
    url: str, loop: Loop, batch: int, failures: int, wake: asyncio.Event, poll: float
) -> None:
    connection = await asyncpg.connect(url, server_settings=LOOP_SETTINGS)
    try:
        while True:
            wake.clear()
            claimed = await connection.fetch(loop.claim, batch, *loop.owner)
            if claimed:
                await connection.execute(loop.insert_attempts, *_attempt_rows(claimed, failures))
                await connection.execute(loop.finish, [row["id"] for row in claimed], *loop.owner)
            if len(claimed) < batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), poll)
    finally:
        await connection.close()


async def run_loop(
    url: str, schema: str, workers: int, batch: int, failures: int, poll: float
) -> None:
    loop = await _loop_on(url, schema)
    events = [asyncio.Event() for _ in range(workers)]

    def on_notify(*_: object) -> None:
        for event in events:
            event.set()

    listener = await asyncpg.connect(url)
    await listener.add_listener(loop.wake_channel, on_notify)
    tasks = [
        asyncio.create_task(_worker(url, loop, batch, failures, event, poll)) for event in events
    ]
    print("ready", loop.claim.split("ORDER BY")[1].split("\n")[0].strip(), flush=True)
    await _until_signal(tasks)
    await listener.close()


async def _until_signal(tasks: list[asyncio.Task[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
    stopper.cancel()


async def run_api(url: str, port: int, pool_size: int) -> None:
    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=pool_size, server_settings=SERVER_SETTINGS
    )

    async def notify(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        row = await pool.fetchrow(
            INSERT_NOTIFICATION,
            body["user_id"],
            body.get("subject", ""),
            body["message"],
            body.get("channels", ["email", "sms", "telegram"]),
        )
        assert row is not None
        answer = {"id": row["id"], "status": row["status"], "created_at": row["created_at"]}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/api/notify/", notify)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    try:
        await _until_signal([])
    finally:
        await runner.cleanup()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    loop = commands.add_parser("loop", help="the bare batched delivery loop")
    loop.add_argument("url")
    loop.add_argument("--schema", choices=("notifyd", "minimal"), default="notifyd")
    loop.add_argument("--workers", type=int, default=2)
    loop.add_argument("--batch", type=int, default=100)
    loop.add_argument("--failures", type=int, default=0)
    loop.add_argument("--poll", type=float, default=1.0)
    api = commands.add_parser("api", help="the bare insert-only endpoint")
    api.add_argument("url")
    api.add_argument("port", type=int)
    api.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    if args.command == "loop":
        asyncio.run(
            run_loop(args.url, args.schema, args.workers, args.batch, args.failures, args.poll)
        )
    else:
        asyncio.run(run_api(args.url, args.port, args.pool_size))


if __name__ == "__main__":
    main()
