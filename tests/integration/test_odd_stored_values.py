"""Other values the schema lets in that notifyd could not handle: found looking for siblings.

- A claim count at the integer's end: `claims + 1` failed the whole claim statement, so
  the dispatcher failed on every round and nothing was delivered for anyone.
- A jsonb value orjson cannot read (a number beyond a double, nesting past 1,024 levels,
  both valid jsonb): every read of the attempt answered 500.
- A vendor answer orjson cannot write (an integer beyond 64 bits): the whole batch of
  attempts being written failed, and the task writing them.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from notifyd.db import Database
from tests.admin.support import page
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.vendor import ForcedAnswer
from tests.support import Daemon

INT_MAX = 2**31 - 1


async def make_user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    return user_id


async def test_a_claim_count_at_the_integers_end_does_not_stop_the_claim(
    db: asyncpg.Connection, database: Database
) -> None:
    user_id = await make_user(db)
    worn = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, claims) VALUES ($1, 'm', $2)"
        " RETURNING id",
        user_id,
        INT_MAX,
    )
    fresh = await db.fetchval("SELECT notifyd.enqueue($1, 'm')", user_id)

    claimed = await database.queue.claim(10, uuid.uuid4(), 30)

    assert {n.id: n.claims for n in claimed} == {worn: INT_MAX, fresh: 1}


async def test_a_notification_claimed_too_often_is_still_delivered(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await make_user(db)
    worn = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, claims, channels)"
        " VALUES ($1, 'm', $2, ARRAY['sms']) RETURNING id",
        user_id,
        INT_MAX,
    )
    fresh = await db.fetchval("SELECT notifyd.enqueue($1, 'm', '', ARRAY['sms'])", user_id)

    for notification_id in (worn, fresh):
        assert (await daemon.wait_finished(notification_id))["status"] == "sent"


async def test_the_database_refuses_a_negative_claim_count(db: asyncpg.Connection) -> None:
    user_id = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message, claims) VALUES ($1, 'm', -1)",
            user_id,
        )
    assert caught.value.constraint_name == "notifications_claims_not_negative"


@pytest.mark.parametrize(
    "stored",
    [
        '{"big": 1e1000}',
        '{"big": -123456789012345678901234567890e400}',
        "[" * 2000 + "]" * 2000,
    ],
    ids=["beyond-a-double", "far-beyond", "deep"],
)
async def test_a_provider_response_orjson_cannot_read_is_shown_as_its_text(
    daemon: Daemon, db: asyncpg.Connection, stored: str
) -> None:
    await daemon.app_ready()
    user_id = await make_user(db)
    notification_id = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'failed', now()) RETURNING id",
        user_id,
    )
    await db.execute(
        "INSERT INTO notifyd.notification_attempts (notification_id, channel, attempt,"
        " status, provider_response, started_at, finished_at)"
        " VALUES ($1, 'sms', 1, 'failed', $2::text::jsonb, now(), now())",
        notification_id,
        stored,
    )
    as_text = await db.fetchval("SELECT provider_response::text FROM notifyd.notification_attempts")

    response = await daemon.client.get(f"/api/notifications/{notification_id}")
    assert response.status == 200, await response.text()
    [attempt] = (await response.json())["attempts"]
    assert attempt["provider_response"] == as_text

    await page(await daemon.client.get(f"/admin/notifications/{notification_id}"))


@pytest.mark.parametrize(
    "answer",
    [
        {"message_id": 10**30, "chat": {"id": 1001}},
        {"message_id": 5, "chat": {"id": -(10**25)}},
    ],
    ids=["message-id", "chat-id"],
)
async def test_a_vendor_answer_beyond_64_bit_integers_is_recorded(
    daemon: Daemon, db: asyncpg.Connection, telegram_api: FakeTelegramApi, answer: dict[str, Any]
) -> None:
    # One attempt's provider answer that orjson cannot write failed the whole batch of
    # attempts being written, and the task writing them.
    telegram_api.force(ForcedAnswer(200, {"ok": True, "result": answer}))
    user_id = await daemon.create_user(telegram_chat_id=1001, phone="+15551234567")
    odd = await daemon.notify(user_id=user_id, message="m", channels=["telegram"])
    plain = await daemon.notify(user_id=user_id, message="m", channels=["sms"])

    finished = await daemon.wait_finished(odd["id"])
    assert finished["status"] == "sent"
    [attempt] = finished["attempts"]
    assert attempt["status"] == "success"
    stored = attempt["provider_response"]
    # Read back through a double: the digits past its precision are not kept.
    assert float(stored["message_id"]) == float(answer["message_id"])
    assert float(stored["chat_id"]) == float(answer["chat"]["id"])
    assert (await daemon.wait_finished(plain["id"]))["status"] == "sent"


async def test_a_vendor_answer_nested_too_deep_to_read_is_an_answer_without_json(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    # `json` raised RecursionError, which no caller expected: the attempt ended as a
    # provider crash (retried as transient) instead of the vendor's refusal.
    telegram_api.force(ForcedAnswer(400, "[" * 100_000 + "]" * 100_000))
    user_id = await daemon.create_user(telegram_chat_id=1001)
    sent = await daemon.notify(user_id=user_id, message="m", channels=["telegram"])

    finished = await daemon.wait_finished(sent["id"])

    [attempt] = finished["attempts"]
    assert attempt["error"] == "Telegram answered HTTP 400 without JSON"
    assert attempt["provider_response"]["http_status"] == 400
