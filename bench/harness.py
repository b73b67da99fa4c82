"""What every measurement shares: parameters, the process factories, waiting, stats."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench.postgres import BenchPostgres
from bench.procs import (
    Child,
    StartFailed,
    free_port,
    http_ready,
    line_ready,
    python_argv,
)
from bench.tables import NOTIFYD, Queue, Who

# Settings a tuning run may change. Never channels or a config file: a shell holding real
# vendor settings would otherwise send thousands of real messages.
TUNABLE_PREFIXES: Final = (
    "NOTIFYD_DISPATCHER__",
    "NOTIFYD_DELIVERY__",
    "NOTIFYD_DATABASE__POOL_",
    "NOTIFYD_RETENTION__",
    "NOTIFYD_API__ENQUEUE_",
)


def settings_from_environment() -> dict[str, str]:
    """Tuning settings of the caller (`TUNABLE_PREFIXES`), for every daemon under test.

    For example `NOTIFYD_DISPATCHER__BATCH_SIZE=100 make bench`. The bench's own settings
    (scenario settings such as the e-mail port and backoff) still win.
    """
    return {name: value for name, value in os.environ.items() if name.startswith(TUNABLE_PREFIXES)}


class MeasureError(RuntimeError):
    """A measurement could not complete (a process died, the work did not finish)."""


@dataclass(frozen=True)
class Params:
    drain_sizes: tuple[int, ...]
    fallback_size: int
    api_duration: float
    api_warmup: float
    api_connections: int
    latency_duration: float
    # Rounds of each latency load, the order of notifyd and its references alternating.
    latency_rounds: int
    idle_interval: float
    users: int
    log_level: str
    start_attempts: int
    start_wait: float
    # Finished notifications the history scenario loads (with three attempts each).
    history_rows: int

    @classmethod
    def full(cls) -> Params:
        return cls(
            drain_sizes=(20_000, 100_000),
            fallback_size=10_000,
            api_duration=10.0,
            api_warmup=2.0,
            api_connections=50,
            latency_duration=10.0,
            latency_rounds=3,
            idle_interval=0.02,
            users=5_000,
            log_level="warning",
            start_attempts=10,
            start_wait=20.0,
            history_rows=1_000_000,
        )

    @classmethod
    def quick(cls) -> Params:
        """The full run with smaller counts and shorter runs."""
        return dataclasses.replace(
            cls.full(),
            drain_sizes=(2_000, 10_000),
            fallback_size=1_500,
            api_duration=5.0,
            api_warmup=1.0,
            latency_duration=4.0,
            latency_rounds=1,
            history_rows=100_000,
        )


@dataclass
class Bench:
    """What every scenario shares: the server, the parameters, and results worth reusing."""

    pg: BenchPostgres
    params: Params
    run_dir: Path
    results_dir: Path
    stamp: str
    log: Callable[[str], None]
    profile: str | None = None
    drains: dict[tuple[Who, int, int, int], dict[str, Any]] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)

    # Processes

    def daemon(
        self, label: str, url: str, *, env: dict[str, str] | None = None, pyinstrument: bool = False
    ) -> Callable[[], Child]:
        """A factory of `notifyd serve` children on `url` (a fresh port each time)."""

        def make() -> Child:
            port = free_port()
            argv = python_argv("-m", "notifyd", "serve")
            if pyinstrument:
                output = self.results_dir / f"pyinstrument-{self.stamp}-{label}.txt"
                argv = python_argv("-m", "pyinstrument", "-r", "text", "-o", str(output), *argv[1:])
            child_env = {
                **settings_from_environment(),
                "NOTIFYD_DATABASE__URL": url,
                "NOTIFYD_HTTP__PORT": str(port),
                "NOTIFYD_LOG__LEVEL": self.params.log_level,
                "NOTIFYD_SHUTDOWN__GRACE_SECONDS": "2",
                **(env or {}),
            }
            child = Child(
                name=f"notifyd-{label}",
                argv=argv,
                env=child_env,
                log_dir=self.run_dir,
                cwd=self.run_dir,
                ready=http_ready(port),
            )
            child.extra["port"] = port
            return child

        return make

    def bare_loop(
        self, label: str, url: str, failures: int = 0, *, queue: Queue = NOTIFYD
    ) -> Callable[[], Child]:
        """A factory of bare loops on `queue`'s tables: notifyd's or the minimal ones."""

        def make() -> Child:
            argv = python_argv(
                "-m",
                "bench.baseline",
                "loop",
                url,
                "--failures",
                str(failures),
                "--schema",
                queue.schema,
            )
            return Child(
                name=f"{'bare' if queue is NOTIFYD else queue.schema}-{label}",
                argv=argv,
                env={},
                log_dir=self.run_dir,
                cwd=self.run_dir,
                ready=line_ready("ready"),
            )

        return make

    def bare_api(self, label: str, url: str) -> Callable[[], Child]:
        def make() -> Child:
            port = free_port()
            argv = python_argv("-m", "bench.baseline", "api", url, str(port))
            child = Child(
                name=f"bare-{label}",
                argv=argv,
                env={},
                log_dir=self.run_dir,
                cwd=self.run_dir,
                ready=http_ready(port),
            )
            child.extra["port"] = port
            return child

        return make

    async def setup(
        self, label: str, makers: Callable[[str], list[Callable[[], Child]]]
    ) -> tuple[str, str, list[Child]]:
        """A fresh database and the children `makers(url)` describes, started and ready.

        When a child fails to start (notifyd half-way through a change), everything is
        torn down, the template migrated anew (a migration may have been edited in place),
        and the whole setup tried again after a wait.
        """
        params = self.params
        for attempt in range(1, params.start_attempts + 1):
            name, url = await self.pg.create_database(label.replace("-", "_"))
            await self.pg.checkpoint()
            children: list[Child] = []
            try:
                for make in makers(url):
                    child = make()
                    children.append(child)
                    await child.start()
            except StartFailed as exc:
                await stop_all(children)
                await self.pg.drop_database(name)
                if attempt == params.start_attempts:
                    raise
                self.log(f"  {label}: {exc}")
                self.log(f"  retrying in {params.start_wait:g}s on a freshly migrated template")
                await asyncio.sleep(params.start_wait)
                await self.pg.create_template(
                    params.users,
                    attempts=params.start_attempts,
                    wait=params.start_wait,
                    log=self.log,
                )
                continue
            return name, url, children
        raise AssertionError("unreachable")


# Helpers


async def wait_done(
    connection: asyncpg.Connection,
    expected: int,
    children: Sequence[Child],
    *,
    deadline: float,
    interval: float,
    queue: Queue = NOTIFYD,
) -> tuple[float, int]:
    """Poll until `expected` notifications are final: (monotonic time seen, polls made)."""
    give_up = time.monotonic() + deadline
    polls = 0
    while True:
        done = await connection.fetchval(queue.count_done)
        polls += 1
        now = time.monotonic()
        if done >= expected:
            return now, polls
        for child in children:
            if not child.running():
                code = child.process.returncode if child.process else None
                raise MeasureError(f"{child.name} exited ({code}) during the run: {child.tail()}")
        if now > give_up:
            raise MeasureError(f"only {done:,} of {expected:,} finished within {deadline:g}s")
        await asyncio.sleep(interval)


def drain_timeout(count: int) -> float:
    # Generous: a slow daemon is a figure, not a reason to hang the whole suite.
    return 120.0 + count / 100


def seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max((later - earlier).total_seconds(), 1e-6)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def fetchrow(url: str, query: str) -> asyncpg.Record:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(query)
    finally:
        await connection.close()
    assert row is not None
    return row


async def stop_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(child.stop() for child in children))
