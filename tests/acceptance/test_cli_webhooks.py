"""`notifyd webhooks off` and check-config's webhooks line, run as the real command."""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest

from tests.acceptance.test_cli import Cli, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.acceptance

ENDPOINTS = json.dumps(
    [
        {
            "url": "http://127.0.0.1:9/hooks",
            "secret": "whsec_" + base64.b64encode(b"cli-webhooks-test-key-24").decode(),
        }
    ]
)


async def switch_on(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ('host-a (instance 1)')"
    )


async def test_off_stops_recording_and_says_what_was(
    cli: Cli,  # noqa: F811  (the fixture's name, as a parameter)
    db: asyncpg.Connection,
) -> None:
    await switch_on(db)
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'sent', now())",
        user_id,
    )

    result = await cli("webhooks", "off")

    assert (result.code, result.stderr) == (0, "")
    assert "status events are no longer recorded" in result.stdout
    assert "switched on by host-a (instance 1)" in result.stdout
    assert "1 event(s) recorded and not sent yet stay" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM notifyd.status_event_recording") == 0
    # From now on nothing is recorded; what was stays.
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'failed', now())",
        user_id,
    )
    assert await db.fetchval("SELECT count(*) FROM notifyd.webhook_events") == 1

    again = await cli("webhooks", "off")
    assert (again.code, again.stdout.strip()) == (
        0,
        "status events were not recorded; nothing changed",
    )


async def test_off_warns_when_this_configuration_would_turn_it_on_again(
    cli: Cli,  # noqa: F811
    db: asyncpg.Connection,
) -> None:
    await switch_on(db)
    result = await cli("webhooks", "off", env={"NOTIFYD_WEBHOOKS__ENDPOINTS": ENDPOINTS})
    assert result.code == 0, result.stderr
    assert "this configuration has 1 webhook endpoint(s)" in result.stderr
    assert "whsec_" not in result.stderr + result.stdout
    assert await db.fetchval("SELECT count(*) FROM notifyd.status_event_recording") == 0


async def test_webhooks_needs_its_subcommand(cli: Cli) -> None:  # noqa: F811
    result = await cli("webhooks")
    assert result.code == 2
    assert "off" in result.stderr


@pytest.mark.parametrize(
    ("recorded", "endpoints", "outcome", "words"),
    [
        (False, False, "skipped", "not recorded"),
        (False, True, "warning", "not recorded yet"),
        (True, True, "ok", "(switched on by host-a (instance 1)); 1 endpoint(s) here"),
        (True, False, "warning", "notifyd webhooks off"),
    ],
)
async def test_check_config_says_whether_events_are_recorded(
    cli: Cli,  # noqa: F811
    db: asyncpg.Connection,
    recorded: bool,
    endpoints: bool,
    outcome: str,
    words: str,
) -> None:
    if recorded:
        await switch_on(db)
    env = {"NOTIFYD_WEBHOOKS__ENDPOINTS": ENDPOINTS} if endpoints else {}
    result = await cli("check-config", env=env)
    (line,) = [text for text in result.stdout.splitlines() if text.startswith("webhooks ")]
    assert line.split()[1] == outcome
    assert words in line
    # A warning is no failure: nothing else here fails either.
    assert result.code == 0, result.stdout
