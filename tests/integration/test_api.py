"""The HTTP API: the compatibility contract, and a clear 4xx for every bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from notifyd.web.keys import ENQUEUER
from tests.support import Daemon, statements_and_rows, wait_until

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


async def count_notifications(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    return count


async def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert field in {error["field"] for error in body["errors"]}, body
    return body


async def test_notify_answers_the_documented_shape(daemon: Daemon) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    response = await daemon.client.post(
        "/api/notify/",
        json={
            "user_id": user_id,
            "subject": "Привет!",
            "message": "Тестовое уведомление",
            "channels": ["email", "sms", "telegram"],
        },
    )
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"id", "status", "created_at"}
    assert isinstance(body["id"], int)
    assert body["status"] == "pending"
    assert ISO_UTC.match(body["created_at"]), body["created_at"]


async def test_notify_defaults_subject_and_channels(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    body = await daemon.notify(user_id=user_id, message="hello")
    row = await db.fetchrow(
        "SELECT subject, channels FROM notifyd.notifications WHERE id = $1", body["id"]
    )
    assert row["subject"] == ""
    assert row["channels"] == ["email", "sms", "telegram"]


async def test_notify_without_trailing_slash_works_too(daemon: Daemon) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    response = await daemon.client.post("/api/notify", json={"user_id": user_id, "message": "x"})
    assert response.status == 200


async def test_requests_arriving_together_share_a_statement_and_keep_their_own_answers(
    daemon_factory: Callable[..., Awaitable[Daemon]], db: asyncpg.Connection, database_url: str
) -> None:
    daemon = await daemon_factory(api={"enqueue_writers": 1})
    enqueuer = daemon.app[ENQUEUER]
    user_id = await daemon.create_user(email="a@example.com")
    bodies = [{"user_id": user_id, "message": f"m{n}"} for n in range(30)]
    bodies[7] = {"user_id": user_id + 1000, "message": "unknown user"}
    blocker = await asyncpg.connect(database_url)
    try:
        # Hold INSERTs back until every request is in, so they queue for the one writer.
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE notifyd.notifications IN EXCLUSIVE MODE")
            posts = [
                asyncio.create_task(daemon.client.post("/api/notify/", json=body))
                for body in bodies
            ]

            async def all_in() -> bool:
                return len(enqueuer) == len(bodies) - 1  # and one in its statement

            await wait_until(all_in, deadline=10, what="29 requests waiting for the writer")
        responses = await asyncio.gather(*posts)
    finally:
        await blocker.close()
    await assert_problem(responses[7], 422, "user_id")
    answers = {}
    for n, response in enumerate(responses):
        if n != 7:
            assert response.status == 200, await response.text()
            answers[(await response.json())["id"]] = bodies[n]["message"]
    stored = await db.fetch("SELECT id, message FROM notifyd.notifications")
    assert {row["id"]: row["message"] for row in stored} == answers
    # 29 rows in at most 6 statements: the one in flight alone, then the batch of 28 good
    # rows and the refused one, split in halves until the refused row is alone.
    statements, rows = await statements_and_rows(db)
    assert rows == 29
    assert statements <= 6, statements


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("user_id missing", {"message": "hi"}, "user_id"),
    ("user_id as string", {"user_id": "1", "message": "hi"}, "user_id"),
    ("user_id as boolean", {"user_id": True, "message": "hi"}, "user_id"),
    ("user_id as float", {"user_id": 1.5, "message": "hi"}, "user_id"),
    ("user_id zero", {"user_id": 0, "message": "hi"}, "user_id"),
    ("user_id negative", {"user_id": -3, "message": "hi"}, "user_id"),
    ("user_id beyond bigint", {"user_id": 2**70, "message": "hi"}, "user_id"),
    ("user_id null", {"user_id": None, "message": "hi"}, "user_id"),
    ("unknown user", {"user_id": 987654, "message": "hi"}, "user_id"),
    ("message missing", {"user_id": "USER"}, "message"),
    ("message empty", {"user_id": "USER", "message": ""}, "message"),
    ("message blank", {"user_id": "USER", "message": " \n\t "}, "message"),
    ("message not a string", {"user_id": "USER", "message": 42}, "message"),
    ("message with NUL", {"user_id": "USER", "message": "a\u0000b"}, "message"),
    ("message too long", {"user_id": "USER", "message": "x" * 65537}, "message"),
    ("subject with LF", {"user_id": "USER", "message": "hi", "subject": "a\nb"}, "subject"),
    ("subject with CR", {"user_id": "USER", "message": "hi", "subject": "a\rb"}, "subject"),
    # The e-mail channel would refuse it for good after it had been accepted.
    ("subject with U+2028", {"user_id": "USER", "message": "hi", "subject": "a\u2028b"}, "subject"),
    ("subject with VT", {"user_id": "USER", "message": "hi", "subject": "a\vb"}, "subject"),
    ("subject too long", {"user_id": "USER", "message": "hi", "subject": "я" * 500}, "subject"),
    ("subject not a string", {"user_id": "USER", "message": "hi", "subject": 5}, "subject"),
    ("channels empty", {"user_id": "USER", "message": "hi", "channels": []}, "channels"),
    ("channels unknown", {"user_id": "USER", "message": "hi", "channels": ["fax"]}, "channels"),
    (
        "channels repeated",
        {"user_id": "USER", "message": "hi", "channels": ["sms", "email", "sms"]},
        "channels",
    ),
    ("channels a string", {"user_id": "USER", "message": "hi", "channels": "sms"}, "channels"),
    ("channels null", {"user_id": "USER", "message": "hi", "channels": None}, "channels"),
    ("unknown field", {"user_id": "USER", "message": "hi", "urgency": 1}, "urgency"),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [(body, field) for _, body, field in INVALID_BODIES],
    ids=[name for name, _, _ in INVALID_BODIES],
)
async def test_notify_rejects_each_broken_rule_and_writes_nothing(
    daemon: Daemon, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    body = {k: (user_id if v == "USER" else v) for k, v in body.items()}
    response = await daemon.client.post("/api/notify/", json=body)
    problem = await assert_problem(response, 422, field)
    assert all(error["message"] for error in problem["errors"])
    assert await count_notifications(db) == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"[1, 2]", 400),
        (b'"a string"', 400),
        (b"42", 400),
        (b"null", 400),
        (b'{"user_id": 1, "message": "\\ud800"}', 400),
        (b'{"user_id": 1, "message": "\xff\xfe"}', 400),
    ],
)
async def test_notify_rejects_bodies_that_are_not_a_json_object(
    daemon: Daemon, db: asyncpg.Connection, raw: bytes, status: int
) -> None:
    response = await daemon.client.post(
        "/api/notify/", data=raw, headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, status, "(body)")
    assert await count_notifications(db) == 0


async def test_notify_rejects_a_body_over_the_limit(daemon: Daemon, db: asyncpg.Connection) -> None:
    limit = daemon.settings.http.max_body_bytes
    raw = b'{"user_id": 1, "message": "' + b"x" * limit + b'"}'
    response = await daemon.client.post(
        "/api/notify/", data=raw, headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413)
    assert await count_notifications(db) == 0


async def test_notify_rejects_other_content_types(daemon: Daemon, db: asyncpg.Connection) -> None:
    response = await daemon.client.post(
        "/api/notify/",
        data="user_id=1&message=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await assert_problem(response, 415)
    assert await count_notifications(db) == 0


async def test_wrong_method_answers_405_as_problem(daemon: Daemon) -> None:
    response = await daemon.client.get("/api/notify/")
    await assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_unknown_notification_is_404(daemon: Daemon) -> None:
    await assert_problem(await daemon.client.get("/api/notifications/424242"), 404)
    await assert_problem(await daemon.client.get("/api/notifications/abc"), 404)
    await assert_problem(await daemon.client.get("/api/notifications/99999999999999999999"), 404)


async def test_notification_shows_its_attempts(daemon: Daemon) -> None:
    user_id = await daemon.create_user(phone="+15551234567")
    created = await daemon.notify(user_id=user_id, message="hi", channels=["sms"])
    finished = await daemon.wait_finished(created["id"])
    assert finished["id"] == created["id"]
    assert finished["user_id"] == user_id
    assert finished["created_at"] == created["created_at"]
    (attempt,) = finished["attempts"]
    assert attempt["channel"] == "sms"
    assert attempt["attempt"] == 1
    assert attempt["status"] == "success"
    assert attempt["error"] is None
    assert attempt["provider_response"]["provider"] == "stub"
    assert ISO_UTC.match(attempt["started_at"])
    assert attempt["finished_at"] >= attempt["started_at"]


async def test_users_create_get_and_patch(daemon: Daemon) -> None:
    response = await daemon.client.post(
        "/api/users/",
        json={"email": "olga@example.com", "phone": "+79001234567", "telegram_chat_id": 1001},
    )
    assert response.status == 201
    user = await response.json()
    assert user["telegram_chat_id"] == "1001"
    fetched = await (await daemon.client.get(f"/api/users/{user['id']}")).json()
    assert fetched == user

    response = await daemon.client.patch(
        f"/api/users/{user['id']}", json={"phone": None, "email": "new@example.com"}
    )
    assert response.status == 200
    patched = await response.json()
    assert patched["phone"] is None
    assert patched["email"] == "new@example.com"
    assert patched["telegram_chat_id"] == "1001"
    assert patched["updated_at"] >= user["updated_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "two@@example.com"}, "email"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "+1 555 123"}, "phone"),
        ({"telegram_chat_id": "chat me"}, "telegram_chat_id"),
        ({"telegram_chat_id": True}, "telegram_chat_id"),
        ({"name": "Ivan"}, "name"),
    ],
)
async def test_users_reject_bad_contacts(
    daemon: Daemon, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    await assert_problem(await daemon.client.post("/api/users/", json=body), 422, field)
    assert await db.fetchval("SELECT count(*) FROM notifyd.users") == 0


async def test_users_patch_errors(daemon: Daemon) -> None:
    user_id = await daemon.create_user(email="a@example.com")
    await assert_problem(await daemon.client.patch(f"/api/users/{user_id}", json={}), 422)
    await assert_problem(
        await daemon.client.patch(f"/api/users/{user_id}", json={"email": "bad"}), 422, "email"
    )
    await assert_problem(await daemon.client.patch("/api/users/424242", json={"phone": None}), 404)
    await assert_problem(await daemon.client.get("/api/users/424242"), 404)
