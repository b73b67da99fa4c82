"""A real PgBouncer in front of a test PostgreSQL, started and stopped by the tests.

Debian's `pgbouncer` package (`apt-get install pgbouncer`); without the binary the tests
that need it are skipped, saying so. It listens on a free port of 127.0.0.1 and forwards
every database name to the server of `server_url`, logging in as the client's user with
the password `server_url` holds (or none). PgBouncer refuses to run as root: as root it
runs as the user pgserver runs PostgreSQL as, who can reach that server's socket.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

PGBOUNCER: Final = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_USER: Final = "pgserver"
START_TIMEOUT: Final = 15.0
# Users the tests connect as: the server URL's own, and the fault tests' unprivileged role.
EXTRA_USERS: Final = ("notifyd",)

PoolMode = Literal["session", "transaction", "statement"]


def pgbouncer_missing() -> str | None:
    """Why PgBouncer tests cannot run here, or None."""
    if not os.access(PGBOUNCER, os.X_OK):
        return f"needs PgBouncer ({PGBOUNCER}; Debian: apt-get install pgbouncer)"
    return None


def _unprivileged_user() -> str:
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["/usr/sbin/useradd", "--system", "--no-create-home", SERVER_USER],
            check=True,
        )
    return SERVER_USER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    """One PgBouncer process; `url(database)` reaches `database` through it."""

    def __init__(
        self,
        server_url: str,
        pool_mode: PoolMode = "transaction",
        pool_size: int = 4,
        **settings: str | int,
    ) -> None:
        """`settings` are more lines of the `[pgbouncer]` section (client_idle_timeout=1)."""
        self.server_url = server_url
        self._settings = settings
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="notifyd-pgbouncer-"))
        self.log_file = self.root / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        parts = urlsplit(server_url)
        self._user = parts.username or "postgres"
        self._password = parts.password or ""
        query = parse_qs(parts.query)
        self._host = query.get("host", [parts.hostname or "localhost"])[0]
        self._server_port = parts.port or int(query.get("port", ["5432"])[0])
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None
        self._write_config()

    def url(self, database: str) -> str:
        """`database` through this PgBouncer, as the server URL's user."""
        netloc = f"{self._user}@127.0.0.1:{self.port}"
        if self._password:
            netloc = f"{self._user}:{self._password}@127.0.0.1:{self.port}"
        return urlunsplit(("postgresql", netloc, f"/{database}", "", ""))

    def url_for(self, direct_url: str) -> str:
        """The database a direct URL names, through this PgBouncer."""
        return self.url(urlsplit(direct_url).path.lstrip("/"))

    @property
    def admin_url(self) -> str:
        """PgBouncer's own console (SHOW, RECONNECT, KILL ...)."""
        return self.url("pgbouncer")

    def _write_config(self) -> None:
        users = [self._user, *(user for user in EXTRA_USERS if user != self._user)]
        auth = "".join(f'"{user}" "{self._password}"\n' for user in users)
        (self.root / "users.txt").write_text(auth)
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self._host} port={self._server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            f"admin_users = {self._user}\n"
            f"pool_mode = {self.pool_mode}\n"
            # Few server connections for many clients: transactions of different clients
            # share them, which is what breaks session state.
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log_file}\n"
            + "".join(f"{key} = {value}\n" for key, value in self._settings.items())
        )
        if self._run_as is not None:
            shutil.chown(self.root, self._run_as)
            for path in self.root.iterdir():
                shutil.chown(path, self._run_as)

    def start(self) -> None:
        self._process = subprocess.Popen(
            [PGBOUNCER, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._run_as,
            cwd=self.root,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self._process.returncode}): {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen: {self.log()}") from None
                time.sleep(0.05)  # a process starting: nothing to wait on but its port

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM (or SIGKILL) and wait: every client and server connection is cut."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop(signal.SIGKILL)
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_file.read_text("utf-8", errors="replace")[-4000:]
        except OSError:
            return ""
