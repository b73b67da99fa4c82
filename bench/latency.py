"""Scenario 3: enqueue-to-sent latency by the database's clock, idle and at half load."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from bench.drain import cached_drain
from bench.harness import Bench, drain_timeout, percentile, wait_done
from bench.procs import Child, cpu_seconds
from bench.report import Figure, TargetKind
from bench.tables import Queue, Who, queue_of

# The references beside notifyd, and how the table names them.
REFERENCES: Final[dict[Who, str]] = {
    "bare": "bare loop",
    "minimal": "bare loop, minimal table",
}
# What each round measures, and the median of the rounds reports.
ROUND_FIGURES: Final = ("p50_ms", "p99_ms", "max_ms", "cpu_us_per_notification")


async def _paced_inserts(
    connection: asyncpg.Connection,
    queue: Queue,
    rate: float,
    duration: float,
    users: int,
    tick: float,
) -> int:
    """Insert `rate` notifications per second, one statement every `tick` seconds."""
    per_tick = rate * tick
    owed = 0.0
    inserted = 0
    start = time.monotonic()
    ticks = round(duration / tick)
    for index in range(ticks):
        delay = start + index * tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        owed += per_tick
        batch = int(owed)
        owed -= batch
        if batch:
            await connection.execute(queue.insert_series, batch, users, ["sms"])
            inserted += batch
    return inserted


async def _latency_run(bench: Bench, who: Who, rate: float, tick: float) -> dict[str, Any]:
    params = bench.params
    queue = queue_of(who)

    def makers(url: str) -> list[Callable[[], Child]]:
        if who == "notifyd":
            return [bench.daemon("latency", url)]
        return [bench.bare_loop("latency", url, queue=queue)]

    name, url, (child,) = await bench.setup(f"latency-{who}", makers)
    try:
        connection = await asyncpg.connect(url)
        try:
            # Warm up (first claims, prepared statements), then measure only what follows.
            await _paced_inserts(connection, queue, 50, 0.5, params.users, 0.02)
            await wait_done(connection, 25, [child], deadline=60, interval=0.05, queue=queue)
            first_id = await connection.fetchval(queue.max_id)
            cpu_before = cpu_seconds(child.pid)
            inserted = await _paced_inserts(
                connection, queue, rate, params.latency_duration, params.users, tick
            )
            total = await connection.fetchval(queue.count_all)
            await wait_done(
                connection,
                total,
                [child],
                deadline=drain_timeout(inserted),
                interval=0.1,
                queue=queue,
            )
            cpu = cpu_seconds(child.pid) - cpu_before
            values = [float(row["ms"]) for row in await connection.fetch(queue.latencies, first_id)]
        finally:
            await connection.close()
    finally:
        await child.stop()
        await bench.pg.drop_database(name)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    result = {
        "rate_per_second": round(rate, 1),
        "samples": len(values),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
        "max_ms": round(values[-1], 3) if values else None,
        # The delivering process's CPU (every thread; to the 10 ms tick, a few seconds in a
        # run) from the first measured insert to the last delivery: on a small machine it
        # shares the cores with PostgreSQL, and a batch may wait for one.
        "cpu_us_per_notification": round(1e6 * cpu / inserted, 1) if inserted else None,
    }
    bench.log(
        f"  latency {who} at {rate:,.0f}/s: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms ({len(values)} samples), "
        f"process CPU {result['cpu_us_per_notification']} µs per notification"
    )
    return result


async def _rounds(bench: Bench, rate: float, tick: float) -> dict[Who, dict[str, Any]]:
    """Each runner's figures at `rate`: the median over `latency_rounds` rounds.

    A 10 s run's p99 is its worst 100 ms, so one hiccup of the machine decides it; and the
    order matters (the first run after a checkpoint has its pages to write). So the rounds
    alternate: notifyd first, then its references first, and so on.
    """
    runs: dict[Who, list[dict[str, Any]]] = {"notifyd": [], **{who: [] for who in REFERENCES}}
    order: list[Who] = ["notifyd", *REFERENCES]
    for index in range(bench.params.latency_rounds):
        for who in order if index % 2 == 0 else [*REFERENCES, "notifyd"]:
            runs[who].append(await _latency_run(bench, who, rate, tick))
    return {who: _median_run(results) for who, results in runs.items()}


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds, with every round's figures kept."""
    merged = dict(results[0])
    for key in ROUND_FIGURES:
        values = [r[key] for r in results if r[key] is not None]
        merged[key] = round(statistics.median(values), 3) if values else None
    merged["samples"] = sum(r["samples"] for r in results)
    merged["rounds"] = [{key: r[key] for key in ROUND_FIGURES} for r in results]
    return merged


def paired_ratios(ours: dict[str, Any], reference: dict[str, Any], key: str) -> list[float]:
    """Each round's `key` of notifyd over the reference's in the same round.

    The machine's state drifts between rounds (other tenants, caches) more than a round
    lasts: a ratio within one round compares like with like, where the ratio of the two
    medians may set notifyd's bad round against the reference's good one.
    """
    return [
        ours_round[key] / theirs[key]
        for ours_round, theirs in zip(ours["rounds"], reference["rounds"], strict=True)
        if ours_round[key] is not None and theirs[key]
    ]


def _target(label: str, quantile: str) -> tuple[TargetKind | None, float | None]:
    """Idle: p99 within 10 ms. Half load: p99 within 1.5 times the bare loop's."""
    if quantile != "p99":
        return None, None
    if label == "idle":
        return "at_most", 10.0
    return "ratio_at_most", 1.5


async def scenario_latency(bench: Bench) -> list[Figure]:
    params = bench.params
    figures = []
    idle_rate = 1 / params.idle_interval
    loads: list[tuple[str, float, float]] = [("idle", idle_rate, params.idle_interval)]
    maximal = await cached_drain(bench, "notifyd", params.drain_sizes[0])
    if maximal["per_second"]:
        loads.append(("half load", maximal["per_second"] / 2, 0.01))
    for label, rate, tick in loads:
        results = await _rounds(bench, rate, tick)
        ours = results["notifyd"]
        references = {who: results[who] for who in REFERENCES}
        name = (
            f"idle (1 insert / {params.idle_interval * 1000:g} ms)"
            if label == "idle"
            else f"half max load ({rate:,.0f}/s)"
        )
        for quantile in ("p50", "p99", "max"):
            target_kind, target = _target(label, quantile)
            figures.append(
                Figure(
                    scenario="3 latency",
                    name=f"{name} {quantile}",
                    unit="ms",
                    value=ours[f"{quantile}_ms"],
                    reference=references["bare"][f"{quantile}_ms"],
                    reference_name=REFERENCES["bare"],
                    target_kind=target_kind,
                    target=target,
                    details={"notifyd": ours, **references} if quantile == "p50" else {},
                )
            )
        if label != "idle":
            ratios = paired_ratios(ours, references["bare"], "p99_ms")
            bench.log(
                "  half load p99 over the bare loop's, round by round: "
                + ", ".join(f"{ratio:.2f}" for ratio in ratios)
            )
            figures.append(
                Figure(
                    scenario="3 latency",
                    name=f"{name} p99 / bare loop's, median of the rounds' own ratios",
                    unit="x",
                    value=round(statistics.median(ratios), 3) if ratios else None,
                    details={"ratios": [round(ratio, 3) for ratio in ratios]},
                )
            )
            # Beside the tail, what the delivering process adds to the machine's load: on a
            # small machine it shares the cores with PostgreSQL, and the tails of rounds
            # that cost more CPU per notification ran longer.
            figures.append(
                Figure(
                    scenario="3 latency",
                    name=f"{name} process CPU per notification",
                    unit="µs",
                    value=ours["cpu_us_per_notification"],
                    reference=references["bare"]["cpu_us_per_notification"],
                    reference_name=REFERENCES["bare"],
                )
            )
        # The minimal loop beside the bare one: what notifyd's schema adds to the wait of
        # the same loop at the same rate.
        for quantile in ("p50", "p99", "max"):
            figures.append(
                Figure(
                    scenario="3 latency",
                    name=f"{name} {quantile}, {REFERENCES['minimal']}",
                    unit="ms",
                    value=references["minimal"][f"{quantile}_ms"],
                    reference=references["bare"][f"{quantile}_ms"],
                    reference_name=REFERENCES["bare"],
                )
            )
    return figures
