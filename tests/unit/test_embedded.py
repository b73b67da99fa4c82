"""The embedded PostgreSQL's bookkeeping, without starting a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from notifyd.db.embedded import _forget_dead_handles


def dead_pid() -> int:
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(process.stdout)


def test_handles_of_dead_processes_are_forgotten(tmp_path: Path) -> None:
    # A handle left by a killed process would keep the server running after every later
    # clean exit; only live processes may hold it.
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead_pid(), os.getpid()]), "utf-8")
    _forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text("utf-8")) == [os.getpid()]


def test_missing_or_garbled_handle_files_are_left_alone(tmp_path: Path) -> None:
    _forget_dead_handles(tmp_path)
    assert not (tmp_path / ".handle_pids.json").exists()
    (tmp_path / ".handle_pids.json").write_text("{not json", "utf-8")
    _forget_dead_handles(tmp_path)
    assert (tmp_path / ".handle_pids.json").read_text("utf-8") == "{not json"
