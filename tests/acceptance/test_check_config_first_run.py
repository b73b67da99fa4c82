"""`notifyd check-config` on a fresh install: what is not set up yet is expected, not broken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from notifyd.cli.check import LOCAL_CATCHER
from tests.acceptance.test_cli import run_notifyd
from tests.fakes.smtp import unused_port

pytestmark = pytest.mark.acceptance


def smtp_listens_on_localhost_25() -> bool:
    try:
        with socket.create_connection(("localhost", 25), timeout=2):
            return True
    except OSError:
        return False


async def test_a_fresh_install_is_all_skipped_with_what_to_set_and_exits_0(
    tmp_path: Path,
) -> None:
    if smtp_listens_on_localhost_25():
        pytest.skip("a mail server listens on localhost:25 here")

    result = await run_notifyd("check-config", env={}, cwd=tmp_path)

    assert result.code == 0, result
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert {part: line.split()[1] for part, line in rows.items()} == {
        "config": "ok",
        "database": "skipped",
        "email": "skipped",
        "sms": "skipped",
        "telegram": "skipped",
    }
    assert f"no embedded database in {tmp_path}" in rows["database"]
    assert "`notifyd serve` creates it" in rows["database"]
    assert not (tmp_path / ".notifyd").exists()  # checking made no cluster
    assert "nothing listens on localhost:25, the default" in rows["email"]
    assert LOCAL_CATCHER in rows["email"]
    assert "pip install aiosmtpd" in rows["email"]  # `make serve` did not install it
    assert "EMAIL_PORT=1025" in rows["email"]
    assert 'channels.sms.provider = "twilio"' in rows["sms"]
    assert "set TELEGRAM_BOT_TOKEN" in rows["telegram"]


async def test_an_smtp_server_that_was_set_and_does_not_answer_is_a_failure(
    tmp_path: Path,
) -> None:
    env = {"EMAIL_HOST": "localhost", "EMAIL_PORT": str(unused_port())}

    result = await run_notifyd("check-config", env=env, cwd=tmp_path)

    assert result.code == 1, result
    (email,) = [line for line in result.stdout.splitlines() if line.startswith("email ")]
    assert email.split()[1] == "failed"
    assert "SMTP connection failed" in email
