"""The README's two commands: `make serve` installs the daemon alone, `make test` the rest.

`make -n` prints what a target would run without running it; `-B` as if nothing were
installed yet, as in a fresh clone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest

from tests.docs.markdown import README, ROOT, blocks, commands

SERVE_LOCK = ROOT / "requirements-serve.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
IMAGE_LOCK = ROOT / "requirements.lock"
# Development tools: none of them is needed to run the daemon.
DEV_ONLY = {"pytest", "mypy", "ruff", "playwright", "schemathesis", "hypothesis", "aiosmtpd"}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text("utf-8")
    return {name.lower().replace("_", "-"): version for name, version in _PIN.findall(text)}


def dry_run(target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Run from `make test`, make would pass its own flags down (and say where it is).
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    args = ["make", "--no-print-directory", "-n", "-B", target, "VENV=/fresh/.venv", "PYTEST_ARGS="]
    run = subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    """The lock files the commands install from."""
    return [m.group(1) for line in lines if (m := re.search(r"-r (\S+\.lock)", line))]


def test_make_serve_installs_the_serve_lock_only_then_serves() -> None:
    lines = dry_run("serve")

    assert installs(lines) == ["requirements-serve.lock"]
    assert lines[-1] == "/fresh/.venv/bin/notifyd serve"


def test_make_test_installs_the_dev_lock_then_runs_pytest() -> None:
    lines = dry_run("test")

    assert installs(lines) == ["requirements-dev.lock"]
    assert lines[-1].split() == ["/fresh/.venv/bin/pytest"]


@pytest.mark.parametrize("target", ["serve", "test"])
def test_a_lock_is_installed_as_it_is_then_checked(target: str) -> None:
    # Resolving a hash-pinned lock again is what broke: pip looks a dependency asked for
    # with an extra up on the index, and refuses any release newer than the lock's.
    lines = dry_run(target)
    lock_lines = [line for line in lines if re.search(r"-r \S+\.lock", line)]
    assert lock_lines
    for line in lock_lines:
        assert {"--require-hashes", "--no-deps"} <= set(line.split()), line
    assert any(line.endswith("-m pip check") for line in lines), lines


def test_the_image_installs_its_locks_as_they_are_then_checks_them() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text("utf-8")
    installs = [line for line in dockerfile.splitlines() if re.search(r"-r \S+\.lock", line)]
    assert len(installs) == 2
    for line in installs:
        assert {"--require-hashes", "--no-deps"} <= set(line.split()), line
        assert line.endswith("&& pip check"), line


def test_the_serve_lock_holds_the_daemon_and_its_database_and_no_dev_tool() -> None:
    serve = pins("requirements-serve.lock")
    dev = pins("requirements-dev.lock")
    image = pins("requirements.lock")

    assert "pgserver" in serve
    assert not DEV_ONLY & set(serve), DEV_ONLY & set(serve)
    assert set(dev) >= DEV_ONLY
    # Every runtime dependency is there, and the image's lock has no embedded database.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    runtime = {re.split(r"[<>=!~;\[ ]", spec)[0].lower() for spec in project["dependencies"]}
    assert runtime <= set(serve)
    assert "pgserver" not in image
    # The same versions as the dev lock: `make test` after `make serve` only adds.
    assert {name: dev.get(name) for name in serve} == serve


def test_the_serve_lock_is_hash_pinned_and_made_by_make_lock() -> None:
    text = SERVE_LOCK.read_text("utf-8")
    assert "#    make lock" in text
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for entry in entries:
        if _PIN.match(entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
    makefile = (ROOT / "Makefile").read_text("utf-8")
    assert "-o requirements-serve.lock" in makefile


def test_ci_runs_the_readme_test_command() -> None:
    readme_commands = [
        command.text.split("#")[0].strip()
        for block in blocks(README.read_text("utf-8"))
        if block.language == "sh"
        for command in commands(block)
    ]
    assert "make serve" in readme_commands
    assert "make test" in readme_commands
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert "make test" in ci
