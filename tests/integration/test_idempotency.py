"""POST /api/notify/ with an Idempotency-Key: a replay gets the first answer, creates nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.integration.test_api import assert_problem, count_notifications
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def post(daemon: Daemon, key: str | None, body: Any, **kwargs: Any) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await daemon.client.post("/api/notify/", json=body, headers=headers, **kwargs)


async def test_a_replay_returns_the_first_answer_and_creates_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    body = {"user_id": user_id, "message": "once", "subject": "hi", "channels": ["email"]}
    first = await post(daemon, "order-42-shipped", body)
    assert first.status == 200
    assert "Idempotent-Replayed" not in first.headers
    original = await first.json()
    await daemon.wait_finished(original["id"])  # its status changes; the replay's does not

    again = await post(daemon, "order-42-shipped", body)
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == original
    assert await count_notifications(db) == 1


async def test_the_same_request_spelled_differently_is_a_replay(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    first = await post(daemon, "k1", {"user_id": user_id, "message": "m", "subject": ""})
    raw = f'{{ "subject" : "",\n "message":"m", "user_id": {user_id} }}'
    again = await daemon.client.post(
        "/api/notify/",
        data=raw,
        headers={"Idempotency-Key": '"k1"', "Content-Type": "application/json"},
    )
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    assert await count_notifications(db) == 1


async def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    assert (await post(daemon, "k2", {"user_id": user_id, "message": "first"})).status == 200
    for changed in (
        {"user_id": user_id, "message": "second"},
        {"user_id": user_id, "message": "first", "channels": ["sms", "email"]},
    ):
        problem = await assert_problem(await post(daemon, "k2", changed), 422, "Idempotency-Key")
        assert "different request" in problem["errors"][0]["message"]
    assert await count_notifications(db) == 1


async def test_concurrent_replays_of_one_key_create_one_notification(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    body = {"user_id": user_id, "message": "raced", "channels": ["sms"]}
    responses = await asyncio.gather(*(post(daemon, "race", body) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count(None) == 1
    assert await count_notifications(db) == 1
    print(f"IDEMPOTENCY concurrent: requests=20 notifications={await count_notifications(db)}")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "1 to 255"),
        ('""', "not be empty between its quotes"),
        ("k" * 256, "1 to 255"),
        ("ключ", "printable ASCII"),
        ("tab\there", "printable ASCII"),
    ],
)
async def test_a_malformed_key_is_a_400_naming_the_header(
    daemon: Daemon, db: asyncpg.Connection, key: str, reason: str
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    response = await daemon.client.post(
        "/api/notify/",
        json={"user_id": user_id, "message": "m"},
        headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")},
    )
    problem = await assert_problem(response, 400, "Idempotency-Key")
    assert reason in problem["errors"][0]["message"]
    assert await count_notifications(db) == 0


async def test_the_key_sent_twice_is_a_400(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    response = await daemon.client.post(
        "/api/notify/",
        json={"user_id": user_id, "message": "m"},
        headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )
    await assert_problem(response, 400, "Idempotency-Key")
    assert await count_notifications(db) == 0


async def test_a_refused_request_does_not_use_up_its_key(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    refused = await post(daemon, "k3", {"user_id": 999_999, "message": "m"})
    await assert_problem(refused, 422, "user_id")
    assert await db.fetchval("SELECT count(*) FROM notifyd.idempotency_keys") == 0
    user_id = await daemon.create_user(email="a@example.com")
    accepted = await post(daemon, "k3", {"user_id": user_id, "message": "m"})
    assert accepted.status == 200
    assert "Idempotent-Replayed" not in accepted.headers


async def test_a_key_is_forgotten_after_its_retention(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(retention={"idempotency_key_hours": 2})
    user_id = await daemon.create_user(email="a@example.com")
    body = {"user_id": user_id, "message": "m"}
    first = await (await post(daemon, "k4", body)).json()
    await db.execute("UPDATE notifyd.idempotency_keys SET created_at = now() - interval '1 hour'")
    assert (await (await post(daemon, "k4", body)).json())["id"] == first["id"]
    await db.execute("UPDATE notifyd.idempotency_keys SET created_at = now() - interval '3 hours'")
    later = await post(daemon, "k4", {"user_id": user_id, "message": "now another request"})
    assert later.status == 200
    assert "Idempotent-Replayed" not in later.headers
    assert (await later.json())["id"] != first["id"]
    assert await count_notifications(db) == 2


async def test_without_a_key_every_request_enqueues(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    body = {"user_id": user_id, "message": "m"}
    assert (await post(daemon, None, body)).status == 200
    assert (await post(daemon, None, body)).status == 200
    assert await count_notifications(db) == 2
