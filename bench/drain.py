"""Drains: a backlog inserted by SQL in one transaction, delivered by notifyd or the bare loop.

Throughput is taken from the database's own clock: from the commit of the bulk insert
(`clock_timestamp()` right after it) to the last `finished_at`. Wall-clock rate, CPU time of
the process under test and of PostgreSQL, transactions, WAL and memory are kept beside it.
Scenarios 1 (drain), 4 (fallback), 5 (memory) and 6 (scale-out) are drains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import asyncpg

from bench import profile as profiling
from bench.harness import (
    Bench,
    drain_timeout,
    fetchrow,
    seconds_between,
    stop_all,
    wait_done,
)
from bench.procs import Child, MemorySampler, cpu_seconds, free_port, memory_kib
from bench.report import Figure
from bench.tables import Who, queue_of

# Transactions, rows written, and the WAL position, to count the database work done.
COUNTERS: Final = """
    SELECT xact_commit + xact_rollback AS transactions, tup_inserted, tup_updated,
           tup_deleted, pg_current_wal_insert_lsn()::text AS lsn
    FROM pg_stat_database WHERE datname = current_database()
"""
WAL_SINCE: Final = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)"
# The harness's own transactions during a drain besides its polls: the counters, the
# insert, the commit time, the WAL position, the final statistics.
HARNESS_TRANSACTIONS: Final = 5


async def drain(
    bench: Bench,
    who: Who,
    count: int,
    *,
    processes: int = 1,
    failures: int = 0,
    profile: str | None = None,
    route: tuple[str, Callable[[str], dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """Insert `count` notifications in one transaction and time their delivery.

    With `failures`, notifyd's e-mail goes to a closed port with zero backoff, so each
    notification takes `failures` failed e-mail attempts, then its SMS. `route` is a name
    and the daemon's variables for the database's URL (through a pooler); such a drain is
    not kept for later scenarios.
    """
    base = f"{count}" + (f"-x{processes}" if processes > 1 else "")
    base += f"-fallback{failures}" if failures else ""
    base += f"-{route[0]}" if route else ""
    label = f"{who}-{base}"
    channels = ["email", "sms"] if failures else ["sms"]
    env: dict[str, str] = {}
    if failures:
        env = {
            "NOTIFYD_CHANNELS__EMAIL__HOST": "127.0.0.1",
            "NOTIFYD_CHANNELS__EMAIL__PORT": str(free_port()),
            "NOTIFYD_CHANNELS__EMAIL__TIMEOUT": "5",
            "NOTIFYD_DELIVERY__MAX_ATTEMPTS": str(failures),
            "NOTIFYD_DELIVERY__BACKOFF_INITIAL": "0",
            "NOTIFYD_DELIVERY__BACKOFF_MAX": "0",
        }

    queue = queue_of(who)

    def makers(url: str) -> list[Callable[[], Child]]:
        if who != "notifyd":
            return [
                bench.bare_loop(f"{base}-{i}", url, failures, queue=queue) for i in range(processes)
            ]
        pyinstrument = profile == "pyinstrument"
        routed = env | (route[1](url) if route else {})
        return [
            bench.daemon(f"{base}-{i}", url, env=routed, pyinstrument=pyinstrument)
            for i in range(processes)
        ]

    name, url, children = await bench.setup(label, makers)
    spy: profiling.PySpy | None = None
    try:
        # Let startup work (first claim round, pool warm-up) settle before measuring.
        await asyncio.sleep(1.0)
        idle_rss = [memory_kib(child.pid).get("VmRSS", 0) / 1024 for child in children]
        samplers = [MemorySampler(child.pid) for child in children]
        for sampler in samplers:
            sampler.start()
        if profile == "py-spy":
            output = bench.results_dir / f"py-spy-{bench.stamp}-{label}.txt"
            spy = profiling.PySpy(children[0].pid, output)
            try:
                await spy.start()
            except RuntimeError as exc:
                # A profile is a bonus: the figures are still worth having without it.
                bench.log(f"  no profile: {exc}")
                spy = None
        cpu_before = [cpu_seconds(child.pid) for child in children]
        pg_before = bench.pg.cpu_seconds()
        connection = await asyncpg.connect(url)
        try:
            before = await connection.fetchrow(COUNTERS)
            started = time.monotonic()
            async with connection.transaction():
                await connection.execute(queue.insert_series, count, bench.params.users, channels)
            committed = time.monotonic()
            commit_row = await connection.fetchrow(
                "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text"
            )
            assert commit_row is not None
            committed_db: datetime = commit_row[0]
            lsn: str = commit_row[1]
            finished, polls = await wait_done(
                connection,
                count,
                children,
                deadline=drain_timeout(count * (failures + 1)),
                interval=0.2 if count <= 20_000 else 0.5,
                queue=queue,
            )
            cpu = sum(cpu_seconds(c.pid) for c in children) - sum(cpu_before)
            pg_cpu = bench.pg.cpu_seconds() - pg_before
            wal_bytes = float(await connection.fetchval(WAL_SINCE, lsn))
            if spy is not None:
                await spy.stop()
            memory = [await sampler.stop() for sampler in samplers]
            stats = await connection.fetchrow(queue.stats)
        finally:
            await connection.close()
        # Exiting backends flush their statistics: stop first, then count.
        await stop_all(children)
        after = await fetchrow(url, COUNTERS)
    finally:
        if spy is not None:
            await spy.stop()
        await stop_all(children)
        await bench.pg.drop_database(name)
    assert stats is not None
    assert before is not None
    transactions = after["transactions"] - before["transactions"] - polls - HARNESS_TRANSACTIONS
    db_seconds = seconds_between(stats["last_finished"], committed_db)
    busy_seconds = seconds_between(stats["last_finished"], stats["first_started"])
    wall = finished - committed
    result: dict[str, Any] = {
        "who": who,
        "count": count,
        "processes": processes,
        "failures": failures,
        "sent": stats["sent"],
        "failed": stats["failed"],
        "attempts": stats["attempts"],
        "insert_seconds": round(committed - started, 3),
        "db_seconds": None if db_seconds is None else round(db_seconds, 3),
        "wall_seconds": round(wall, 3),
        "per_second": None if db_seconds is None else round(count / db_seconds, 1),
        "per_second_wall": round(count / wall, 1),
        "per_second_busy": None if busy_seconds is None else round(count / busy_seconds, 1),
        "attempts_per_second": None
        if db_seconds is None
        else round(stats["attempts"] / db_seconds, 1),
        "process_cpu_seconds": round(cpu, 2),
        "postgres_cpu_seconds": round(pg_cpu, 2),
        # Autocommitted statements count one each, so this is close to round trips.
        "transactions_per_notification": round(transactions / count, 3),
        "rows_inserted_per_notification": round(
            (after["tup_inserted"] - before["tup_inserted"] - count) / count, 3
        ),
        "rows_updated_per_notification": round(
            (after["tup_updated"] - before["tup_updated"]) / count, 3
        ),
        "wal_bytes_per_notification": round(wal_bytes / count),
        "process_cpu_ms_per_notification": round(1000 * cpu / count, 4),
        "postgres_cpu_ms_per_notification": round(1000 * pg_cpu / count, 4),
        "idle_rss_mb": [round(value, 1) for value in idle_rss],
        "memory": memory,
        "peak_rss_mb": max(m["peak_rss_mb"] for m in memory),
        "vm_hwm_mb": max(m["vm_hwm_mb"] for m in memory),
    }
    if spy is not None and spy.output.is_file():
        summary = profiling.summarize(spy.output)
        summary["file"] = str(spy.output)
        summary["drain"] = label
        bench.profiles.append(summary)
        text_path = spy.output.with_suffix(".top.txt")
        text_path.write_text(profiling.render(summary) + "\n", "utf-8")
        bench.log(f"  profile: {spy.output} (summary in {text_path})")
    if profile == "pyinstrument":
        path = bench.results_dir / f"pyinstrument-{bench.stamp}-{base}-0.txt"
        bench.profiles.append({"drain": label, "file": str(path)})
        bench.log(f"  profile: {path}")
    bench.log(
        f"  {label}: {result['per_second']:,} notifications/s "
        f"({result['per_second_wall']:,}/s wall, {result['attempts']:,} attempts, "
        f"cpu {result['process_cpu_ms_per_notification']:.3f} ms + postgres "
        f"{result['postgres_cpu_ms_per_notification']:.3f} ms, "
        f"{result['transactions_per_notification']:.2f} transactions, "
        f"{result['wal_bytes_per_notification']} WAL bytes per notification, "
        f"peak rss {result['peak_rss_mb']} MB)"
    )
    # The first measurement is the one the table shows, and the one later scenarios reuse.
    if route is None:
        bench.drains.setdefault((who, count, processes, failures), result)
    return result


async def cached_drain(bench: Bench, who: Who, count: int, processes: int = 1) -> dict[str, Any]:
    cached = bench.drains.get((who, count, processes, 0))
    if cached is not None:
        return cached
    return await drain(bench, who, count, processes=processes)


def _drain_details(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in {"who"}}


async def scenario_drain(bench: Bench) -> list[Figure]:
    """notifyd against two references: the bare loop on its schema, and on a minimal one.

    The first ratio is what notifyd's code costs over the least code on the same tables;
    the second adds what notifyd's schema costs over the least schema (`bench/minimal.sql`;
    `python -m bench.schema_costs` takes that cost apart).
    """
    figures = []
    for index, count in enumerate(bench.params.drain_sizes):
        profile = bench.profile if index == 0 else None
        ours = await drain(bench, "notifyd", count, profile=profile)
        bare = await drain(bench, "bare", count)
        minimal = await drain(bench, "minimal", count)
        details = {
            "notifyd": _drain_details(ours),
            "bare": _drain_details(bare),
            "minimal": _drain_details(minimal),
        }
        figures.append(
            Figure(
                scenario="1 drain",
                name=f"{count:,} by SQL, sms stub",
                unit="notif/s",
                value=ours["per_second"],
                reference=bare["per_second"],
                reference_name="bare loop, notifyd's schema",
                target_kind="ratio_at_least",
                target=0.7,
                details=details,
            )
        )
        figures.append(
            Figure(
                scenario="1 drain",
                name=f"{count:,} by SQL, sms stub",
                unit="notif/s",
                value=ours["per_second"],
                reference=minimal["per_second"],
                reference_name="bare loop, minimal table",
                details={"bare_to_minimal": _ratio(bare["per_second"], minimal["per_second"])},
            )
        )
    return figures


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


async def scenario_memory(bench: Bench) -> list[Figure]:
    sizes = bench.params.drain_sizes
    small, large = min(sizes), max(sizes)
    ours_large = await cached_drain(bench, "notifyd", large)
    ours_small = await cached_drain(bench, "notifyd", small)
    bare_large = bench.drains.get(("bare", large, 1, 0))
    return [
        Figure(
            scenario="5 memory",
            name=f"peak RSS draining {large:,}",
            unit="MB",
            value=ours_large["vm_hwm_mb"],
            reference=ours_small["vm_hwm_mb"],
            reference_name=f"notifyd draining {small:,}",
            target_kind="at_most",
            target=150,
            details={
                "idle_rss_mb": ours_large["idle_rss_mb"],
                "sampled_peak_rss_mb": ours_large["peak_rss_mb"],
                "bare_loop_vm_hwm_mb": None if bare_large is None else bare_large["vm_hwm_mb"],
                "note": "ratio ~1 means memory does not grow with the backlog",
            },
        )
    ]


async def scenario_scaleout(bench: Bench) -> list[Figure]:
    count = bench.params.drain_sizes[0]
    # The reference runs right beside, not from the drain scenario's cache: minutes apart
    # on a shared machine, the two would not see the same neighbours.
    one = await drain(bench, "notifyd", count)
    two = await drain(bench, "notifyd", count, processes=2)
    return [
        Figure(
            scenario="6 scale-out",
            name=f"{count:,} with 2 daemons",
            unit="notif/s",
            value=two["per_second"],
            reference=one["per_second"],
            reference_name="1 daemon",
            details={"two": _drain_details(two), "one": _drain_details(one)},
        )
    ]


async def scenario_fallback(bench: Bench) -> list[Figure]:
    count = bench.params.fallback_size
    ours = await drain(bench, "notifyd", count, failures=3, profile=bench.profile)
    bare = await drain(bench, "bare", count, failures=3)
    return [
        Figure(
            scenario="4 fallback",
            name=f"{count:,} x (3 refused emails + sms)",
            unit="attempts/s",
            value=ours["attempts_per_second"],
            reference=bare["attempts_per_second"],
            reference_name="bare loop, same rows",
            target_kind="at_least",
            target=10_000,
            details={"notifyd": _drain_details(ours), "bare": _drain_details(bare)},
        )
    ]
