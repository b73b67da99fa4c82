"""Suppressed contacts end to end: set by a vendor's answer, honoured, shown and lifted.

The daemon runs in-process on a real PostgreSQL against the fake Telegram (chat 4003 has
blocked the bot) and a real SMTP server.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import pytest

from notifyd.delivery.endings import SUPPRESSED
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.vendor import ForcedAnswer
from tests.support import Daemon

BLOCKED = 4003
BLOCKED_REASON = "Telegram: Forbidden: bot was blocked by the user"


def trail(notification: dict[str, object]) -> list[tuple[str, str]]:
    attempts = notification["attempts"]
    assert isinstance(attempts, list)
    return [(a["channel"], a["status"]) for a in attempts]


async def _blocked_user(daemon: Daemon) -> int:
    return await daemon.create_user(email="ivan@example.com", telegram_chat_id=BLOCKED)


async def _send(daemon: Daemon, user_id: int) -> dict[str, object]:
    answer = await daemon.notify(user_id=user_id, message="hello", channels=["telegram", "email"])
    return await daemon.wait_finished(answer["id"])


async def _user(daemon: Daemon, user_id: int) -> dict[str, object]:
    response = await daemon.client.get(f"/api/users/{user_id}")
    assert response.status == 200
    data: dict[str, object] = await response.json()
    return data


async def test_a_blocked_chat_is_suppressed_then_skipped_without_calling_the_vendor(
    daemon: Daemon, telegram_api: FakeTelegramApi, smtp_server: FakeSmtpServer
) -> None:
    user_id = await _blocked_user(daemon)

    first = await _send(daemon, user_id)

    assert first["status"] == "sent"
    assert trail(first) == [("telegram", "failed"), ("email", "success")]
    user = await _user(daemon, user_id)
    [suppression] = user["suppressions"]  # type: ignore[misc]
    assert suppression["channel"] == "telegram"
    assert suppression["reason"] == BLOCKED_REASON
    assert datetime.fromisoformat(suppression["since"]).tzinfo is not None
    calls = len(telegram_api.calls)

    second = await _send(daemon, user_id)

    assert trail(second) == [("telegram", "failed"), ("email", "success")]
    skipped = second["attempts"][0]  # type: ignore[index]
    assert skipped["error"] == SUPPRESSED
    assert skipped["provider_response"] is None
    assert len(telegram_api.calls) == calls, "the vendor was not asked again"
    assert len(smtp_server.received) == 2
    metrics = await daemon.metrics()
    assert metrics[("notifyd_suppressed_contacts", (("channel", "telegram"),))] == 1
    assert metrics[("notifyd_suppressed_contacts", (("channel", "email"),))] == 0


async def test_a_suppression_on_the_last_channel_fails_the_notification_naming_it(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)

    answer = await daemon.notify(user_id=user_id, message="hello", channels=["telegram"])
    finished = await daemon.wait_finished(answer["id"])

    assert finished["status"] == "failed"
    [attempt] = finished["attempts"]
    assert (attempt["status"], attempt["error"]) == ("failed", SUPPRESSED)


async def test_changing_the_contact_lifts_the_suppression(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)

    response = await daemon.client.patch(f"/api/users/{user_id}", json={"telegram_chat_id": 1001})

    assert response.status == 200
    assert (await response.json())["suppressions"] == []
    again = await _send(daemon, user_id)
    assert trail(again) == [("telegram", "success")]


async def test_changing_another_contact_keeps_it(daemon: Daemon) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)

    response = await daemon.client.patch(f"/api/users/{user_id}", json={"phone": "+15005550010"})

    assert [s["channel"] for s in (await response.json())["suppressions"]] == ["telegram"]


async def test_another_application_s_update_lifts_it(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)

    await db.execute("UPDATE notifyd.users SET telegram_chat_id = '1002' WHERE id = $1", user_id)

    assert (await _user(daemon, user_id))["suppressions"] == []


async def test_the_api_lifts_it_and_the_vendor_is_asked_again(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)
    telegram_api.blocked.discard(BLOCKED)  # the user unblocked the bot
    telegram_api.chats.add(BLOCKED)

    response = await daemon.client.delete(f"/api/users/{user_id}/suppressions/telegram")

    assert response.status == 204
    assert await response.read() == b""
    assert (await _user(daemon, user_id))["suppressions"] == []
    again = await _send(daemon, user_id)
    assert trail(again) == [("telegram", "success")]


async def test_lifting_what_is_not_there_is_a_404_problem(daemon: Daemon) -> None:
    user_id = await daemon.create_user(email="ivan@example.com")

    none_there = await daemon.client.delete(f"/api/users/{user_id}/suppressions/telegram")
    no_user = await daemon.client.delete("/api/users/999999/suppressions/telegram")

    assert none_there.status == 404
    assert none_there.content_type == "application/problem+json"
    assert "no suppression on telegram" in (await none_there.json())["detail"]
    assert no_user.status == 404
    assert (await no_user.json())["detail"] == "user 999999 does not exist"


@pytest.mark.parametrize("channel", ["fax", "TELEGRAM", "%00", "telegram%20", "x" * 300])
async def test_an_unknown_channel_is_a_422_naming_the_field(
    daemon: Daemon, db: asyncpg.Connection, channel: str
) -> None:
    user_id = await _blocked_user(daemon)
    await _send(daemon, user_id)

    response = await daemon.client.delete(f"/api/users/{user_id}/suppressions/{channel}")

    assert response.status == 422
    body = await response.json()
    assert body["errors"] == [
        {"field": "channel", "message": "must be one of: email, sms, telegram"}
    ]
    assert await db.fetchval("SELECT count(*) FROM notifyd.suppressions") == 1


async def test_an_answer_for_no_chat_suppresses_nothing(
    daemon: Daemon, telegram_api: FakeTelegramApi, db: asyncpg.Connection
) -> None:
    # A 403 whose description says something else: this message fails, the contact stays.
    user_id = await daemon.create_user(email="ivan@example.com", telegram_chat_id=1001)
    telegram_api.force(
        ForcedAnswer(403, {"ok": False, "error_code": 403, "description": "Forbidden: odd"})
    )

    finished = await _send(daemon, user_id)

    assert trail(finished) == [("telegram", "failed"), ("email", "success")]
    assert await db.fetchval("SELECT count(*) FROM notifyd.suppressions") == 0


async def test_a_refusal_of_a_contact_changed_meanwhile_suppresses_nothing(
    daemon: Daemon, telegram_api: FakeTelegramApi, db: asyncpg.Connection
) -> None:
    # The user gives a new chat while the vendor is still answering about the old one:
    # its "blocked" is about a contact the user no longer has, and must not hold back
    # the new one.
    user_id = await _blocked_user(daemon)
    telegram_api.delay = 1.0  # below the channel's timeout: the 403 still comes
    answer = await daemon.notify(user_id=user_id, message="hello", channels=["telegram"])
    await telegram_api.wait_for_calls(1)

    response = await daemon.client.patch(f"/api/users/{user_id}", json={"telegram_chat_id": 1001})
    assert response.status == 200
    finished = await daemon.wait_finished(answer["id"])
    telegram_api.delay = 0.0

    assert trail(finished) == [("telegram", "failed")]
    assert await db.fetchval("SELECT count(*) FROM notifyd.suppressions") == 0
    again = await _send(daemon, user_id)
    assert trail(again) == [("telegram", "success")]
