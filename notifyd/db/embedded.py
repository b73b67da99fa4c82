"""The embedded PostgreSQL used when no database URL is configured."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifyd.errors import DatabaseUnavailableError

DATABASE_NAME = "notifyd"
CHECK_DATABASE = "SELECT 1 FROM pg_database WHERE datname = 'notifyd';"
CREATE_DATABASE = "CREATE DATABASE notifyd;"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded server; `url` points at its `notifyd` database."""

    url: str
    data_dir: Path
    _server: Any

    def stop(self) -> None:
        """Release this process's handle; the server stops when the last one is gone."""
        self._server.cleanup()


@contextmanager
def quiet_pgserver_import() -> Iterator[None]:
    """Import pgserver without its import-time warning.

    platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback under
    /tmp is fine for a socket directory.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or join) the PostgreSQL server whose data lives in `data_dir`.

    Blocking: call it before the event loop runs. Data survives restarts; several notifyd
    processes on one data directory share one server.
    """
    # Imported here: only the embedded mode needs it, and it is slow to import.
    try:
        with quiet_pgserver_import():
            from pgserver.postgres_server import get_server
    except ImportError:
        raise DatabaseUnavailableError(
            "no database is configured and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL, or install notifyd[embedded] (CPython 3.11-3.12 on x86_64 Linux, "
            "macOS or Windows)"
        ) from None

    # pgserver narrates every step at INFO; its failures still come through.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    try:
        server = get_server(data_dir, cleanup_mode="stop")
        # Two processes starting at once may both try to create it: the loser's error is
        # harmless, psql reports it and the database exists either way.
        if "(1 row)" not in server.psql(CHECK_DATABASE):
            server.psql(CREATE_DATABASE)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DatabaseUnavailableError(
            f"could not start the embedded PostgreSQL in {data_dir}: {exc}"
        ) from exc
    return EmbeddedPostgres(url=server.get_uri(DATABASE_NAME), data_dir=data_dir, _server=server)


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that died without releasing the server from pgserver's handle list.

    pgserver stops the server when its last handle goes; a handle left by a process that
    was killed would keep it running after every later clean exit.
    """
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text("utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive), "utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def psql_executable() -> str | None:
    """The psql shipped with the embedded PostgreSQL, else the one on PATH."""
    try:
        with quiet_pgserver_import():
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        return shutil.which("psql")
    bundled = Path(POSTGRES_BIN_PATH) / "psql"
    return str(bundled) if bundled.is_file() else shutil.which("psql")
