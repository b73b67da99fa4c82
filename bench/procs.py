"""Child processes under test: start, wait until ready, sample memory and CPU, stop.

Everything under test runs in its own process (the real `notifyd serve`, the bare loop, the
bare endpoint), so the harness shares no interpreter with it and /proc tells each one's
CPU time and memory apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartFailed(RuntimeError):
    """A child exited, or never became ready, before the measurement could begin."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        data = handle.read()
    # The command name may hold spaces and parentheses: split after its closing one.
    return data[data.rfind(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of `pid` (plus its reaped children's, if asked)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime (here shifted by 3).
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def run_seconds(pid: int) -> float:
    """CPU time of `pid`'s main thread to the nanosecond (the scheduler's count), or of
    the whole process to the tick.

    /proc/PID/schedstat is there when the kernel keeps scheduler statistics; a backend's
    CPU time over a one-second run needs better than the 10 ms ticks of /proc/PID/stat.
    It counts the main thread only: right for a PostgreSQL backend, not for a process
    with threads (`cpu_seconds` counts them all, those already ended included).
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return cpu_seconds(pid)


def child_pids(parent: int) -> list[int]:
    """The live processes whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == parent:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of `pid`, in KiB; empty if it is gone."""
    result: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    result[key] = int(value.split()[0])
    except OSError:
        return {}
    return result


@dataclass
class MemorySampler:
    """Samples a process's resident set every `interval` seconds until stopped."""

    pid: int
    interval: float = 0.1
    peak_rss_kib: int = 0
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"rss-sampler:{self.pid}")

    async def _run(self) -> None:
        while True:
            rss = memory_kib(self.pid).get("VmRSS", 0)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.samples += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> dict[str, float]:
        """Stop sampling; the kernel's own high-water mark (VmHWM) comes with the samples."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        memory = memory_kib(self.pid)
        return {
            "peak_rss_mb": round(self.peak_rss_kib / 1024, 1),
            "vm_hwm_mb": round(memory.get("VmHWM", 0) / 1024, 1),
            "rss_now_mb": round(memory.get("VmRSS", 0) / 1024, 1),
            "samples": self.samples,
        }


@dataclass
class Child:
    """A child process with stdout and stderr kept in files under `log_dir`."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_dir: Path
    cwd: Path
    ready: Callable[[Child], Awaitable[bool]] | None = None
    process: asyncio.subprocess.Process | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.err"

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, deadline: float = 60.0) -> None:
        """Start the process and wait until `ready` says so; raise StartFailed otherwise."""
        env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=env, cwd=self.cwd, stdout=out, stderr=err
            )
        give_up = time.monotonic() + deadline
        while True:
            if self.process.returncode is not None:
                raise StartFailed(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            if self.ready is None or await self.ready(self):
                return
            if time.monotonic() > give_up:
                await self.stop()
                raise StartFailed(f"{self.name} not ready within {deadline:g}s: {self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 3, width: int = 300) -> str:
        """The last lines of stderr and stdout, for a one-glance reason of a failure."""
        found = []
        for path in (self.stderr_path, self.stdout_path):
            text = _read_text(path).strip()
            if text:
                # A traceback logged as JSON carries its lines as "\n" escapes.
                last = text.replace("\\n", "\n").splitlines()[-lines:]
                found.append(" | ".join(line.strip()[:width] for line in last))
        return " || ".join(found) or "(no output)"

    async def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


def http_ready(port: int, path: str = "/healthz") -> Callable[[Child], Awaitable[bool]]:
    """Ready when GET `path` answers 200."""

    async def check(_child: Child) -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=1)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{port}{path}") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    return check


def line_ready(marker: str) -> Callable[[Child], Awaitable[bool]]:
    """Ready when the child printed `marker` on stdout."""

    async def check(child: Child) -> bool:
        return marker in _read_text(child.stdout_path)

    return check


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return ""


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]
