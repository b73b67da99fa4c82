"""The real `notifyd` command as a subprocess, with its JSON log lines collected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR", "PYTHONPATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class DaemonProcess:
    """`python -m notifyd ...` with a clean environment; stdout parsed line by line."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.args = args
        # Run in the child before notifyd starts (e.g. to lower its resource limits).
        self.preexec_fn = preexec_fn
        self.env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
        self.env.update(env)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.cwd = cwd
        self.lines: list[str] = []
        self.stderr = b""
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._process is not None
        return self._process

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifyd",
            *self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=self.preexec_fn,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        async for raw in self._process.stdout:
            async with self._changed:
                self.lines.append(raw.decode("utf-8").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def events(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON (fails if one is not)."""
        return [json.loads(line) for line in self.lines]

    async def wait_for_event(self, name: str, deadline: float = 30.0) -> dict[str, Any]:
        give_up = time.monotonic() + deadline

        def found() -> dict[str, Any] | None:
            for line in self.lines:
                if f'"{name}"' in line:
                    event: dict[str, Any] = json.loads(line)
                    if event.get("event") == name:
                        return event
            return None

        async with self._changed:
            while (event := found()) is None:
                if self._process is not None and self._process.returncode is not None:
                    stderr = b""
                    if self._process.stderr is not None:
                        stderr = await self._process.stderr.read()
                    raise AssertionError(
                        f"notifyd exited before {name}: {self.tail()}\n{stderr.decode()[-2000:]}"
                    )
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {name} within {deadline}s: {self.tail()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return event

    async def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait(self, deadline: float = 30.0) -> int:
        code = await asyncio.wait_for(self.process.wait(), deadline)
        if self._reader is not None:
            await self._reader
        assert self.process.stderr is not None
        self.stderr = await self.process.stderr.read()
        return code

    async def stop(self) -> int:
        if self._process is None:
            return 0
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                return await self.wait(deadline=30)
            except TimeoutError:
                self._process.kill()
        return await self.wait()

    def tail(self, count: int = 15) -> str:
        return "\n".join(self.lines[-count:])
