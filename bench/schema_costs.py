"""What each part of notifyd's schema costs the server per notification delivered.

`python -m bench.schema_costs [--rounds 5] [--count 20000] [--only TEXT,...]`

Every variant of `bench/schema_variants.py` (notifyd's schema as migrated, with one
feature removed; the minimal schema; notifyd's stripped to its columns) runs in a scratch
database cloned from one template, on an embedded server of its own: `count`
notifications are inserted in one statement, then a procedure delivers them inside the
server (claim 100, write their attempts, finish them, committing after each statement),
as `bench/server_lifecycle.sql` does. Measured for each run: the backend's CPU time and
the server's elapsed time per notification delivered, the WAL written, and the CPU time
of the insert. The variants run once per round in a shuffled order, `rounds` times, and
the full schema again after every few of them: each run is compared with the mean of the
full-schema runs just before and after it (a minute apart at most, where a round takes
several), and the difference to notifyd's full schema is the median of those differences
over the rounds. So the machine's drift falls on both sides of each difference.

Autovacuum is off on this server (it would start at random during a run) and a
checkpoint precedes each delivery, so every run writes the same full-page images.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench import report
from bench.lifecycle import LIFECYCLE
from bench.postgres import BenchPostgres
from bench.procs import run_seconds
from bench.schema_variants import FULL, VARIANTS, Variant

USERS: Final = 5_000
BATCH: Final = 100
# The full schema runs again after this many other variants, to bracket each of them.
BRACKET: Final = 4
# The bare loop's settings (bench/baseline.py); notifyd.claim() sets the first two itself.
SESSION_SETTINGS: Final = {
    "enable_sort": "off",
    "enable_bitmapscan": "off",
    "plan_cache_mode": "force_custom_plan",
    "timezone": "UTC",
}
WAL_LSN: Final = "SELECT pg_current_wal_insert_lsn()::text"
WAL_SINCE: Final = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)"
CALL_LIFECYCLE: Final = "CALL pg_temp.lifecycle($1, $2, $3, $4)"


class VariantFailed(RuntimeError):
    """A variant's schema change or lifecycle failed, or did not deliver everything."""


@dataclass(frozen=True)
class Run:
    """One delivery of `count` notifications on one variant, per notification."""

    variant: str
    round: int
    deliver_cpu_us: float
    deliver_us: float
    wal_bytes: float
    insert_cpu_us: float


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def measure(pg: BenchPostgres, variant: Variant, count: int, round_: int) -> Run:
    """Insert and deliver `count` notifications on a fresh database of `variant`."""
    name, url = await pg.create_database("schema_costs")
    try:
        connection = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
        try:
            return await _measure(connection, variant, count, round_)
        except asyncpg.PostgresError as exc:
            raise VariantFailed(f"{variant.name}: {exc}") from exc
        finally:
            await connection.close()
    finally:
        await pg.drop_database(name)


async def _measure(
    connection: asyncpg.Connection, variant: Variant, count: int, round_: int
) -> Run:
    for statement in variant.ddl:
        await connection.execute(statement)
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    cpu = run_seconds(backend)
    await connection.execute(variant.queue.insert_series, count, USERS, ["sms"])
    insert_cpu = run_seconds(backend) - cpu
    await connection.execute("ANALYZE")
    await connection.execute(LIFECYCLE)
    await connection.execute("CHECKPOINT")
    lsn = await connection.fetchval(WAL_LSN)
    cpu = run_seconds(backend)
    row = await connection.fetchrow(
        CALL_LIFECYCLE, BATCH, variant.claim, variant.attempts, variant.finish
    )
    deliver_cpu = run_seconds(backend) - cpu
    wal = float(await connection.fetchval(WAL_SINCE, lsn))
    assert row is not None
    done = await connection.fetchval(variant.queue.count_done)
    stats = await connection.fetchrow(variant.queue.stats)
    assert stats is not None
    if row["delivered"] != count or done != count or stats["attempts"] != count:
        raise VariantFailed(
            f"{variant.name}: delivered {row['delivered']}, final {done}, "
            f"attempts {stats['attempts']} of {count}"
        )
    per = 1e6 / count
    return Run(
        variant=variant.name,
        round=round_,
        deliver_cpu_us=round(deliver_cpu * per, 2),
        deliver_us=round(row["seconds"] * per, 2),
        wal_bytes=round(wal / count, 1),
        insert_cpu_us=round(insert_cpu * per, 2),
    )


def _bracketed_difference(runs: list[Run], field: str) -> dict[str, float]:
    """Median over rounds of each run's figure minus its bracketing full-schema runs'.

    `runs` in the order they ran; the reference of a run is the mean of the nearest full
    run before it and the nearest after it in the same round (one of them at the ends).
    """
    differences: dict[str, list[float]] = {}
    for index, run in enumerate(runs):
        if run.variant == FULL:
            continue
        same_round = [(i, r) for i, r in enumerate(runs) if r.round == run.round]
        before = [r for i, r in same_round if i < index and r.variant == FULL][-1:]
        after = [r for i, r in same_round if i > index and r.variant == FULL][:1]
        brackets = [getattr(r, field) for r in before + after]
        if brackets:
            reference = statistics.fmean(brackets)
            differences.setdefault(run.variant, []).append(getattr(run, field) - reference)
    result = {variant: statistics.median(values) for variant, values in differences.items()}
    result[FULL] = 0.0
    return result


def _order(variants: list[Variant], shuffler: random.Random) -> list[Variant]:
    """One round: the others shuffled, with the full schema first and after every few."""
    full = [variant for variant in variants if variant.name == FULL]
    others = [variant for variant in variants if variant.name != FULL]
    shuffler.shuffle(others)
    order = list(full)
    for start in range(0, len(others), BRACKET):
        order += others[start : start + BRACKET] + full
    return order


def summarize(variants: list[Variant], runs: list[Run]) -> list[dict[str, Any]]:
    """One row per variant: medians, minimum, spread, and the differences to `FULL`."""
    cpu_delta = _bracketed_difference(runs, "deliver_cpu_us")
    elapsed_delta = _bracketed_difference(runs, "deliver_us")
    insert_delta = _bracketed_difference(runs, "insert_cpu_us")
    rows = []
    for variant in variants:
        mine = [run for run in runs if run.variant == variant.name]
        if not mine:
            continue
        cpu = [run.deliver_cpu_us for run in mine]
        rows.append(
            {
                "variant": variant.name,
                "runs": len(mine),
                "deliver_cpu_us_median": round(statistics.median(cpu), 1),
                "deliver_cpu_us_min": round(min(cpu), 1),
                "deliver_cpu_us_max": round(max(cpu), 1),
                "deliver_cpu_us_vs_full": _rounded(cpu_delta.get(variant.name)),
                "deliver_us_median": round(statistics.median(r.deliver_us for r in mine), 1),
                "deliver_us_min": round(min(r.deliver_us for r in mine), 1),
                "deliver_us_vs_full": _rounded(elapsed_delta.get(variant.name)),
                "wal_bytes_median": round(statistics.median(r.wal_bytes for r in mine)),
                "insert_cpu_us_median": round(statistics.median(r.insert_cpu_us for r in mine), 1),
                "insert_cpu_us_vs_full": _rounded(insert_delta.get(variant.name)),
            }
        )
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "variant",
        "deliver cpu us: median (min-max)",
        "vs full",
        "elapsed us: median (min)",
        "vs full",
        "WAL B",
        "insert cpu us",
        "vs full",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row["variant"],
                f"{row['deliver_cpu_us_median']:.1f} "
                f"({row['deliver_cpu_us_min']:.1f}-{row['deliver_cpu_us_max']:.1f})",
                _signed(row["deliver_cpu_us_vs_full"]),
                f"{row['deliver_us_median']:.1f} ({row['deliver_us_min']:.1f})",
                _signed(row["deliver_us_vs_full"]),
                f"{row['wal_bytes_median']:,}",
                f"{row['insert_cpu_us_median']:.1f}",
                _signed(row["insert_cpu_us_vs_full"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for index, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        text.append("  ".join(cells).rstrip())
        if index == 0:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


def _select(only: str) -> list[Variant]:
    """The variants whose name contains one of the comma-separated `only` (and FULL)."""
    wanted = [part.strip().lower() for part in only.split(",") if part.strip()]
    if not wanted:
        return list(VARIANTS)
    return [v for v in VARIANTS if v.name == FULL or any(w in v.name.lower() for w in wanted)]


async def _run(pg: BenchPostgres, args: argparse.Namespace) -> dict[str, Any]:
    variants = _select(args.only)
    info: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": report.machine(),
        "postgres": await pg.describe(),
        "params": {"count": args.count, "rounds": args.rounds, "seed": args.seed},
    }
    for line in report.header_lines(info)[:2]:
        _log(line)
    admin = await asyncpg.connect(pg.server_url)
    try:
        # Our own throwaway server: an autovacuum worker starting in the middle of one
        # run would add its work to that run's WAL and to the machine's load.
        await admin.execute("ALTER SYSTEM SET autovacuum = off")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    await pg.settle_wal()
    _log("creating the template database (notifyd migrate, users, minimal schema)")
    await pg.create_template(USERS, attempts=1, wait=0, log=_log)
    shuffler = random.Random(args.seed)
    runs: list[Run] = []
    for round_ in range(1, args.rounds + 1):
        order = _order(variants, shuffler)
        _log(f"round {round_}/{args.rounds} (load average {os.getloadavg()[0]:.2f})")
        for variant in order:
            run = await measure(pg, variant, args.count, round_)
            runs.append(run)
            _log(
                f"  {variant.name}: {run.deliver_cpu_us:.1f} us cpu, {run.deliver_us:.1f} us "
                f"elapsed, {run.wal_bytes:,.0f} WAL bytes, insert {run.insert_cpu_us:.1f} us"
            )
    info["finished_at"] = datetime.now(UTC).isoformat()
    info["load_average_at_end"] = os.getloadavg()
    info["rows"] = summarize(variants, runs)
    info["runs"] = [asdict(run) for run in runs]
    return info


def _save(info: dict[str, Any]) -> Path:
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = report.RESULTS_DIR / f"schema-costs-{stamp}.json"
    path.write_text(json.dumps(info, indent=2, default=str) + "\n", "utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schema_costs", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant (5)")
    parser.add_argument("--count", type=int, default=20_000, help="notifications per run")
    parser.add_argument(
        "--only", default="", help="comma-separated parts of variant names (full always runs)"
    )
    parser.add_argument("--seed", type=int, default=13, help="the shuffle's seed")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args(argv)
    if args.list:
        for variant in VARIANTS:
            print(variant.name)
        return 0
    work_dir = Path(tempfile.mkdtemp(prefix="notifyd-schema-costs-"))
    started = time.monotonic()
    pg = BenchPostgres.start(work_dir)
    try:
        info = asyncio.run(_run(pg, args))
    finally:
        pg.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    machine = info["machine"]
    print(
        f"{args.count:,} notifications per run, {args.rounds} rounds; load average "
        f"{machine['load_average'][0]:.2f} at start, {info['load_average_at_end'][0]:.2f} "
        f"at end ({machine['cores']} cores); notifyd {machine['git_commit']}"
    )
    print(
        "us per notification delivered (claim, attempt, finish); vs full: median difference "
        "to the full-schema runs bracketing each run"
    )
    print()
    print(table(info["rows"]))
    print()
    print(f"saved {_save(info)}")
    _log(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
