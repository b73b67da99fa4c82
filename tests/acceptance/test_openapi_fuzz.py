"""schemathesis against the running `notifyd serve`: no server errors, no answer off the spec.

Every operation of /api/openapi.json gets generated requests, valid and invalid ones
(with a fixed seed, so a run can be repeated). The checks: no 5xx; every status, content
type and body as documented; and invalid requests refused. Not checked: that every
schema-valid request is accepted, since a valid body can still name a user that does
not exist (a 422).
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

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
EXAMPLES_PER_OPERATION = 25
SEED = 20261130


async def test_no_server_error_and_no_answer_off_the_spec(
    launch: Launcher,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    await launch(
        "serve",
        env={
            "DATABASE_URL": database_url,
            "NOTIFYD_HTTP__PORT": str(port),
        },
    )
    schemathesis = Path(sys.executable).parent / "schemathesis"
    process = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"http://127.0.0.1:{port}/api/openapi.json",
        "--checks",
        ",".join(CHECKS),
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
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode()
    summary = re.search(r"(\d+) generated", text)
    print(f"SCHEMATHESIS: {summary.group(0) if summary else '?'} exit={process.returncode}")
    assert process.returncode == 0, text[-6000:]
