"""A PostgreSQL server of one test's own, to stop and start under a running daemon.

The session's server is shared by every test, so stopping it is out of the question. This
one uses pgserver's PostgreSQL binaries in a fresh temporary directory and listens only on
a Unix socket in it: nothing is shared with other tests, and the URL stays valid across a
stop and a start. As root, pgserver runs PostgreSQL as the user `pgserver` (PostgreSQL
refuses to run as root); this helper does the same.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from notifyd.db.embedded import quiet_pgserver_import

SERVER_USER = "pgserver"
START_TIMEOUT = 60.0


class StoppablePostgres:
    """initdb once, then `start` and `stop` at will; `cleanup` stops it and deletes it all."""

    def __init__(self, max_connections: int = 50) -> None:
        self.max_connections = max_connections
        with quiet_pgserver_import():
            from pgserver._commands import POSTGRES_BIN_PATH
        self._bin = Path(POSTGRES_BIN_PATH)
        # Short, under /tmp: a Unix socket path must stay under ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="notifyd-fault-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_file = self.data_dir / "server.log"
        self._user = SERVER_USER if os.geteuid() == 0 else None
        self.running = False

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"

    def init(self) -> None:
        self.data_dir.mkdir()
        self.socket_dir.mkdir()
        if self._user is not None:
            self._let_server_user_in()
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--encoding=utf8",
            "-U",
            "postgres",
        )

    def start(self) -> None:
        options = (
            f"-h '' -k {self.socket_dir} -c fsync=off -c max_connections={self.max_connections}"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")
        self.running = False

    def make_standby(self) -> None:
        """From the next start on, a standby of no primary: in recovery, read-only for good."""
        signal = self.data_dir / "standby.signal"
        signal.touch()
        if self._user is not None:
            shutil.chown(signal, SERVER_USER, SERVER_USER)

    def cleanup(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log_file.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def _let_server_user_in(self) -> None:
        with quiet_pgserver_import():
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SERVER_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self._bin)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self._bin, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self._bin.parent / "lib", read)
        for directory in (self.data_dir, self.socket_dir):
            shutil.chown(directory, SERVER_USER, SERVER_USER)

    def _run(self, program: str, *args: str) -> None:
        # Output to a file, not a pipe: the postmaster inherits pg_ctl's descriptors and
        # would keep a pipe open forever.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                [str(self._bin / program), *args],
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self._user,
                timeout=START_TIMEOUT + 30,
                check=False,
                cwd=self.root,
            )
            if result.returncode != 0:
                output.seek(0)
                raise RuntimeError(
                    f"{program} failed ({result.returncode}): {output.read()}\n{self.server_log()}"
                )
