"""Scenario 2: `POST /api/notify/` under load, against a bare insert-only endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.harness import Bench, drain_timeout, wait_done
from bench.load import run_load
from bench.procs import Child, cpu_seconds
from bench.report import Figure
from bench.tables import NOTIFYD, Who


async def _api_run(bench: Bench, who: Who) -> dict[str, Any]:
    params = bench.params

    def makers(url: str) -> list[Callable[[], Child]]:
        return [bench.daemon("api", url) if who == "notifyd" else bench.bare_api("api", url)]

    name, url, (child,) = await bench.setup(f"api-{who}", makers)
    try:
        endpoint = f"http://127.0.0.1:{child.extra['port']}/api/notify/"
        options = {"users": params.users, "connections": params.api_connections}
        await run_load(endpoint, duration=params.api_warmup, **options)
        connection = await asyncpg.connect(url)
        try:
            rows_before = await connection.fetchval(NOTIFYD.count_all)
            done_before = await connection.fetchval(NOTIFYD.count_done)
            cpu_before, pg_before = cpu_seconds(child.pid), bench.pg.cpu_seconds()
            load = await run_load(endpoint, duration=params.api_duration, **options)
            cpu = cpu_seconds(child.pid) - cpu_before
            pg_cpu = bench.pg.cpu_seconds() - pg_before
            rows = await connection.fetchval(NOTIFYD.count_all) - rows_before
            delivered = await connection.fetchval(NOTIFYD.count_done) - done_before
            catch_up = None
            if who == "notifyd":
                load_end = time.monotonic()
                total = await connection.fetchval(NOTIFYD.count_all)
                finished, _ = await wait_done(
                    connection, total, [child], deadline=drain_timeout(total), interval=0.1
                )
                catch_up = round(finished - load_end, 2)
        finally:
            await connection.close()
    finally:
        await child.stop()
        await bench.pg.drop_database(name)
    duration = load["duration_s"]
    result = {
        **load,
        "rows_inserted": rows,
        "delivered_during_load": delivered if who == "notifyd" else None,
        "delivered_per_second_during_load": round(delivered / duration, 1)
        if who == "notifyd"
        else None,
        "seconds_to_deliver_the_rest": catch_up,
        "process_cpu_seconds": round(cpu, 2),
        "postgres_cpu_seconds": round(pg_cpu, 2),
    }
    bench.log(
        f"  api {who}: {load['requests_per_s']:,} requests/s, p99 {load['latency_p99_ms']} ms, "
        f"{load['errors']} errors, {rows:,} rows"
        + (f", delivered {delivered:,} meanwhile" if who == "notifyd" else "")
    )
    return result


async def scenario_api(bench: Bench) -> list[Figure]:
    ours = await _api_run(bench, "notifyd")
    bare = await _api_run(bench, "bare")
    failed = ours["errors"] + bare["errors"]
    return [
        Figure(
            scenario="2 api",
            name=f"POST /api/notify/, {bench.params.api_connections} connections"
            + (f" ({failed:,} requests failed)" if failed else ""),
            unit="req/s",
            value=ours["requests_per_s"],
            reference=bare["requests_per_s"],
            reference_name="bare insert endpoint",
            target_kind="ratio_at_least",
            target=0.8,
            details={"notifyd": ours, "bare": bare},
        )
    ]
