"""One embedded PostgreSQL for the whole run, and a fresh database per measurement.

Every database is cloned from a template built by notifyd's own migrations (run as
`python -m notifyd migrate`, so the harness never imports the package it measures) and
filled with users; the daemon and its bare reference get identical tables. The template
also holds the minimal schema (`bench/minimal.sql`) of the second reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.procs import REPO, child_pids, cpu_seconds, python_argv

MINIMAL_SCHEMA = Path(__file__).resolve().parent / "minimal.sql"

INSERT_USERS = """
    INSERT INTO notifyd.users (email, phone, telegram_chat_id)
    SELECT 'user' || g || '@example.com', '+7900' || lpad(g::text, 7, '0'), g::text
    FROM generate_series(1, $1) AS g
"""
SETTINGS_SHOWN = (
    "shared_buffers",
    "max_connections",
    "fsync",
    "synchronous_commit",
    "wal_level",
    "work_mem",
    "min_wal_size",
)
# WAL as a server that has been running has it. A fresh server has no WAL segment to reuse:
# each new one is written full of zeros first, which holds every commit for ~10 ms about
# once a second at 10,000 notifications/s. Which measurement paid for that depended on the
# order of the runs: the first after a checkpoint created the segments, later ones reused
# them (the half-load p99 of whichever ran first doubled). A running server recycles its
# segments at each checkpoint, keeping up to min_wal_size of them.
STEADY_WAL_SEGMENTS = 48
STEADY_WAL_SETTINGS = {"min_wal_size": "1GB", "max_wal_size": "4GB"}


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class BenchPostgres:
    """The embedded server, with helpers to make and drop the run's databases."""

    server: Any
    data_dir: Path
    server_url: str
    work_dir: Path
    template: str = ""

    @classmethod
    def start(cls, work_dir: Path) -> BenchPostgres:
        """Start a throwaway server in a temporary directory (blocking)."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        data_dir = Path(tempfile.mkdtemp(prefix="notifyd-bench-pg-"))
        server = get_server(data_dir, cleanup_mode="delete")
        return cls(server=server, data_dir=data_dir, server_url=server.get_uri(), work_dir=work_dir)

    def stop(self) -> None:
        self.server.cleanup()

    async def settle_wal(self) -> None:
        """Give the server WAL segments to reuse, as one that has been running has."""
        admin = await asyncpg.connect(self.server_url)
        try:
            for name, value in STEADY_WAL_SETTINGS.items():
                await admin.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await admin.execute("SELECT pg_reload_conf()")
            for _ in range(STEADY_WAL_SEGMENTS):
                # A switch needs something written since the last one.
                await admin.execute("SELECT pg_logical_emit_message(false, 'bench', 'x')")
                await admin.execute("SELECT pg_switch_wal()")
            # The checkpoint turns the segments just filled into ones to reuse.
            await admin.execute("CHECKPOINT")
        finally:
            await admin.close()

    def url(self, name: str) -> str:
        return database_url(self.server_url, name)

    def postmaster_pid(self) -> int:
        pid: int = self.server.get_pid()
        return pid

    def cpu_seconds(self) -> float:
        """CPU time of the whole server: postmaster, live backends, and exited ones."""
        postmaster = self.postmaster_pid()
        total = cpu_seconds(postmaster, children=True)
        return total + sum(cpu_seconds(pid) for pid in child_pids(postmaster))

    async def _admin(self, statement: str) -> None:
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    async def create_template(
        self, users: int, *, attempts: int, wait: float, log: Callable[[str], None]
    ) -> None:
        """Migrate a template database with notifyd's own command and add `users` users.

        The minimal schema is built after the users, whose ids and phones it copies.
        """
        name = f"bench_template_{uuid.uuid4().hex[:8]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        for attempt in range(1, attempts + 1):
            error = await _migrate(self.url(name), self.work_dir)
            if error is None:
                break
            if attempt == attempts:
                raise RuntimeError(f"notifyd migrate failed: {error}")
            log(f"  notifyd migrate failed ({error}); retrying in {wait:g}s")
            await asyncio.sleep(wait)
        connection = await asyncpg.connect(self.url(name))
        try:
            await connection.execute(INSERT_USERS, users)
            await connection.execute(MINIMAL_SCHEMA.read_text("utf-8"))
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()
        if self.template:
            await self.drop_database(self.template)
        self.template = name

    async def create_database(self, label: str) -> tuple[str, str]:
        """A fresh clone of the template: (name, url)."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name, self.url(name)

    async def checkpoint(self) -> None:
        """Write every dirty page out now, and make the WAL segments used so far reusable.

        Before every measured run: none starts with another's dirty pages to write back or
        with fewer segments to reuse.
        """
        await self._admin("CHECKPOINT")

    async def drop_database(self, name: str) -> None:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def describe(self) -> dict[str, Any]:
        connection = await asyncpg.connect(self.server_url)
        try:
            version = await connection.fetchval("SELECT version()")
            short = await connection.fetchval("SHOW server_version")
            settings = {name: await connection.fetchval(f"SHOW {name}") for name in SETTINGS_SHOWN}
            probe = await _probe(connection)
        finally:
            await connection.close()
        return {"version": short, "version_full": version, "settings": settings, "probe": probe}


async def _probe(connection: asyncpg.Connection, rounds: int = 100) -> dict[str, float]:
    """Median round trip and single-row commit, 20 ms apart as at the idle latency test.

    Waking from idle costs a VM a good part of a millisecond per hop; this tells how much
    of the latency figures the machine itself accounts for.
    """
    await connection.execute("CREATE TABLE bench_probe (x int)")
    selects, commits = [], []
    try:
        for _ in range(rounds):
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            await connection.fetchval("SELECT 1")
            selects.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            await connection.execute("INSERT INTO bench_probe VALUES (1)")
            commits.append(time.perf_counter() - started)
    finally:
        await connection.execute("DROP TABLE bench_probe")
    return {
        "select_1_ms_p50": round(statistics.median(selects) * 1000, 3),
        "insert_commit_ms_p50": round(statistics.median(commits) * 1000, 3),
    }


async def _migrate(url: str, cwd: Path) -> str | None:
    """Run `notifyd migrate` on `url`; None on success, else the tail of its output."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env |= {
        "NOTIFYD_DATABASE__URL": url,
        "NOTIFYD_LOG__LEVEL": "warning",
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *python_argv("-m", "notifyd", "migrate"),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode == 0:
        return None
    text = output.decode("utf-8", errors="replace").strip()[-1500:]
    return f"exit {process.returncode} after {time.monotonic() - started:.1f}s: {text}"
