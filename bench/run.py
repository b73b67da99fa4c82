"""Run the benchmark suite: `python -m bench [--quick] [--only drain,api] [--profile py-spy]`.

One embedded PostgreSQL serves the whole run; every figure is measured beside its bare
reference on an identical fresh database, so the ratio holds on a noisy machine. The table
is printed and saved, with the machine's description, as bench/results/<time>.json (and
latest.json).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import load, report
from bench import profile as profiling
from bench.harness import Bench, MeasureError, Params, settings_from_environment
from bench.postgres import BenchPostgres
from bench.report import Figure
from bench.scenarios import DEFAULT_SCENARIOS, SCENARIOS


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts and shorter runs (about 3 minutes)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run, among: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--sizes", default="", help="drain sizes, comma-separated (default 20000,100000)"
    )
    parser.add_argument(
        "--history-rows",
        type=int,
        default=None,
        help="finished notifications (3 attempts each) the history scenario loads "
        "(default 1000000; it runs only when named in --only)",
    )
    parser.add_argument(
        "--profile",
        choices=("py-spy", "pyinstrument"),
        default=None,
        help="profile the daemon during the first drain and the fallback drain",
    )
    parser.add_argument(
        "--log-level", default=None, help="the daemon's log level (default warning)"
    )
    parser.add_argument(
        "--start-attempts",
        type=int,
        default=None,
        help="tries to start a daemon that fails at start (default 10, 20 s apart)",
    )
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=None,
        help="rounds of each latency load (default 3, 1 with --quick); more rounds make the"
        " median of the rounds' own ratios steadier on a noisy machine",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' output in the temp dir"
    )
    return parser


def _params(args: argparse.Namespace) -> Params:
    params = Params.quick() if args.quick else Params.full()
    changes: dict[str, Any] = {}
    if args.sizes:
        changes["drain_sizes"] = tuple(int(size) for size in args.sizes.split(","))
    if args.log_level:
        changes["log_level"] = args.log_level
    if args.start_attempts:
        changes["start_attempts"] = args.start_attempts
    if args.history_rows:
        changes["history_rows"] = args.history_rows
    if args.latency_rounds:
        changes["latency_rounds"] = args.latency_rounds
    if not changes:
        return params
    return Params(**{**params.__dict__, **changes})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        _parser().error(f"unknown scenarios: {', '.join(unknown)}")
    if args.profile == "py-spy" and profiling.py_spy() is None:
        _parser().error("py-spy is not installed: pip install py-spy")
    if args.profile == "pyinstrument" and not profiling.pyinstrument_available():
        _parser().error("pyinstrument is not installed: pip install pyinstrument")
    params = _params(args)
    run_dir = Path(tempfile.mkdtemp(prefix="notifyd-bench-"))
    started = time.monotonic()
    _log(f"notifyd bench ({'quick' if args.quick else 'full'}), work files in {run_dir}")
    pg = BenchPostgres.start(run_dir)
    try:
        info = asyncio.run(_run(pg, params, run_dir, only or list(DEFAULT_SCENARIOS), args))
    finally:
        pg.stop()
        if not args.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
    _log(f"done in {time.monotonic() - started:.0f}s")
    return 1 if any(figure.get("error") for figure in info["figures"]) else 0


async def _run(
    pg: BenchPostgres,
    params: Params,
    run_dir: Path,
    names: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    bench = Bench(
        pg=pg,
        params=params,
        run_dir=run_dir,
        results_dir=report.RESULTS_DIR,
        stamp=stamp,
        log=_log,
        profile=args.profile,
    )
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    await pg.settle_wal()
    info: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "mode": "quick" if args.quick else "full",
        "machine": report.machine(),
        "postgres": await pg.describe(),
        "load_tool": load.tool(),
        "notifyd_settings": settings_from_environment(),
        "params": params.__dict__,
    }
    for line in report.header_lines(info):
        _log(line)
    _log("creating the template database (notifyd migrate, users)")
    await pg.create_template(
        params.users, attempts=params.start_attempts, wait=params.start_wait, log=_log
    )
    figures: list[Figure] = []
    for name in names:
        _log(f"{name}:")
        try:
            figures.extend(await _scenario(bench, name))
        except Exception as exc:
            _log(traceback.format_exc())
            figures.append(
                Figure(scenario=name, name="(failed)", unit="", value=None, error=str(exc))
            )
    info["finished_at"] = datetime.now(UTC).isoformat()
    info["load_average_at_end"] = os.getloadavg()
    info["figures"] = [figure.as_json() for figure in figures]
    info["profiles"] = bench.profiles
    print()
    for line in report.header_lines(info):
        print(line)
    print()
    print(report.table(figures))
    for summary in bench.profiles:
        if "by_own" in summary:
            print()
            print(f"profile of notifyd draining {summary['drain']} (py-spy, {summary['file']}):")
            print(profiling.render(summary))
    path = report.save(info, quick=args.quick)
    print()
    print(f"saved {path}")
    return info


async def _scenario(bench: Bench, name: str, attempts: int = 3) -> list[Figure]:
    """Run one scenario; again, after a wait, if a process under test died in the middle."""
    for attempt in range(1, attempts + 1):
        try:
            return await SCENARIOS[name](bench)
        except MeasureError as exc:
            if attempt == attempts or "exited" not in str(exc):
                raise
            wait = bench.params.start_wait
            _log(f"  {exc}\n  running {name} again in {wait:g}s")
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main())
