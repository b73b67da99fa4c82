"""schemathesis against the running `notifyd serve`, with every check: the document is the
contract, in both directions.

Every operation of /api/openapi.json gets generated requests, valid and invalid ones, in
every phase (examples, coverage, fuzzing, and stateful sequences that follow the
document's links), with a fixed seed so that a run can be repeated. Every check runs:
no 5xx; every status, content type, header and body as documented; invalid requests
refused; valid requests accepted; methods the document does not list refused with a
correct Allow header; and, with API tokens, requests without one refused.

Two refusals of valid requests depend on the database, not on the request (an unknown
user, a reused Idempotency-Key): schemathesis.toml lets them through for that one
operation, and the check in schemathesis_hooks.py holds every such refusal to those two
reasons.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.acceptance.daemon_process import free_port
from tests.acceptance.test_serve import Launcher, launch  # noqa: F401  (the fixture)

pytestmark = pytest.mark.acceptance

HERE = Path(__file__).parent
EXAMPLES_PER_OPERATION = 25
SEED = 20261130
TOKEN = "t0ken-for-the-fuzzer-0123456789"


@pytest.mark.parametrize("tokens", [False, True], ids=["open", "with-tokens"])
async def test_every_check_passes_against_the_document(
    launch: Launcher,  # noqa: F811
    database_url: str,
    tmp_path: Path,
    tokens: bool,
) -> None:
    port = free_port()
    env = {"DATABASE_URL": database_url, "NOTIFYD_HTTP__PORT": str(port)}
    auth: list[str] = []
    if tokens:
        env["NOTIFYD_API__TOKENS"] = f'["{TOKEN}"]'
        auth = ["--header", f"Authorization: Bearer {TOKEN}"]
    await launch("serve", env=env)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    process = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"http://127.0.0.1:{port}/api/openapi.json",
        *auth,
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--request-timeout",
        "10",
        "--no-color",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={
            "PATH": str(Path(sys.executable).parent),
            "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
        },
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode()
    summary = re.search(r"(\d+) generated", text)
    print(f"SCHEMATHESIS: {summary.group(0) if summary else '?'} exit={process.returncode}")
    assert process.returncode == 0, text[-6000:]
    # Every phase ran, stateful sequences included.
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert phase in text, phase
    assert "API Links:" in text
