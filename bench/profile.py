"""Profiling the daemon during a drain: py-spy attached to it, or pyinstrument around it.

py-spy writes collapsed stacks (`--format raw`, one `frame;frame;... count` per line, which
speedscope.app and flamegraph.pl read). `summarize` turns them into the top functions by
own and by total time, and a rough split by the library the time is spent in.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Where a leaf frame's file says the time goes, first match wins.
BUCKETS: tuple[tuple[str, str], ...] = (
    ("asyncpg", "asyncpg (client: encode, decode, protocol)"),
    ("structlog", "logging (structlog)"),
    ("logging/", "logging (stdlib)"),
    ("orjson", "json (orjson)"),
    ("pydantic", "pydantic"),
    ("aiohttp", "aiohttp"),
    ("aiosmtplib", "aiosmtplib"),
    ("email/", "email package (building messages)"),
    ("concurrent/futures", "thread pool (run_in_executor)"),
    ("asyncio/", "asyncio (event loop, queues, tasks)"),
    ("selectors", "asyncio (event loop, queues, tasks)"),
    ("uuid", "uuid"),
    ("datetime", "datetime"),
    ("notifyd/", "notifyd's own code"),
)


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found is None:
        candidate = Path(sys.executable).with_name("py-spy")
        found = str(candidate) if candidate.is_file() else None
    return found


def pyinstrument_available() -> bool:
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


class PySpy:
    """`py-spy record` attached to a running process until `stop`."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self._process = await asyncio.create_subprocess_exec(
            executable,
            "record",
            "--pid",
            str(self.pid),
            "--format",
            "raw",
            "--function",
            # Only samples that hold the GIL: the daemon's CPU, not threads parked on a lock.
            "--gil",
            "--rate",
            str(self.rate),
            "--output",
            str(self.output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        # Let it attach before the measured work begins.
        await asyncio.sleep(1.0)
        if self._process.returncode is not None:
            assert self._process.stderr is not None
            error = (await self._process.stderr.read()).decode(errors="replace")
            raise RuntimeError(f"py-spy failed to attach: {error.strip()[-500:]}")

    async def stop(self) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self._process.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()


def _frame_name(frame: str) -> tuple[str, str]:
    """(`function (file:line)`, file) of one collapsed-stack frame."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return frame, match["file"]


def _bucket(path: str) -> str:
    for needle, name in BUCKETS:
        if needle in path:
            return name
    return "other (stdlib, C code)"


def summarize(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Top functions by own and total samples, and samples by library of the leaf frame."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text("utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        # Skip the thread/process pseudo-frames py-spy may put first.
        frames = [frame for frame in frames if frame[1]] or frames
        leaf, leaf_file = frames[-1]
        own[leaf] += count
        buckets[_bucket(leaf_file)] += count
        for name in {name for name, _ in frames}:
            total[name] += count
        for name in {name for name, path in frames if path.startswith("notifyd/")}:
            ours[name] += count

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(100 * n / samples, 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": samples,
        "by_own": rows(own),
        "by_total": rows(total),
        "by_library": rows(buckets),
        "by_notifyd_total": rows(ours),
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples at 100 Hz, holding the GIL (idle waits not sampled)"]
    for key, title in (
        ("by_library", "by library of the innermost frame"),
        ("by_own", "by own time"),
        ("by_total", "by total time (the function or anything it calls)"),
        ("by_notifyd_total", "notifyd's functions by total time"),
    ):
        lines.append("")
        lines.append(f"{title}:")
        for row in summary[key]:
            lines.append(f"  {row['percent']:5.1f}%  {row['samples']:6d}  {row['function']}")
    return "\n".join(lines)
