"""`notifyd cancel` and `notifyd retry`, run as the real command."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.acceptance.test_cli import Cli, add_user, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.acceptance


async def scheduled(cli: Cli) -> int:  # noqa: F811  (the fixture's name, as a parameter)
    user = await add_user(cli, "--phone", "+79001234567")
    result = await cli(
        "send", "--user", str(user), "--message", "later", "--send-at", "2999-01-01T00:00:00Z"
    )
    assert result.code == 0, result.stderr
    return int(result.stdout)


async def test_cancel_then_retry(cli: Cli, db: asyncpg.Connection) -> None:  # noqa: F811
    notification_id = await scheduled(cli)

    result = await cli("cancel", str(notification_id))
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.strip() == f"notification {notification_id}: cancelled"
    again = await cli("cancel", str(notification_id))
    assert again.code == 1
    assert f"notification {notification_id} is cancelled: it cannot be cancelled" in again.stderr

    result = await cli("retry", str(notification_id), "--json")
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["status"], answer["round"]) == ("pending", 2)
    row = await db.fetchrow(
        "SELECT status, round FROM notifyd.notifications WHERE id = $1", notification_id
    )
    assert (row["status"], row["round"]) == ("pending", 2)


async def test_unknown_ids_and_wrong_statuses_exit_1(cli: Cli) -> None:  # noqa: F811
    for command in ("cancel", "retry"):
        result = await cli(command, "424242")
        assert result.code == 1
        assert "notification 424242 does not exist" in result.stderr
    notification_id = await scheduled(cli)
    result = await cli("retry", str(notification_id))
    assert result.code == 1
    assert "is pending: it cannot be retried" in result.stderr
    result = await cli("cancel", "0")
    assert result.code == 2
