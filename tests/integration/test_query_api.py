"""GET /api/notifications and /api/users/{id}/notifications: filters and keyset pages."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.integration.test_api import assert_problem
from tests.support import Daemon


async def seed(db: asyncpg.Connection) -> dict[str, Any]:
    """Two users; 7 notifications of Ann's on several channels, 3 of Bob's, mixed states."""
    ann, bob = [
        row["id"]
        for row in await db.fetch(
            "INSERT INTO notifyd.users (phone) VALUES ('+79001234567'), ('+79007654321') "
            "RETURNING id"
        )
    ]
    ids = {}
    for n in range(7):
        channels = ["sms"] if n % 2 else ["email", "telegram"]
        ids[f"ann{n}"] = await db.fetchval(
            "INSERT INTO notifyd.notifications (user_id, message, channels, status, "
            "run_after, created_at) VALUES ($1, $2, $3, $4, now() + interval '1 day', "
            "now() - make_interval(hours => $5)) RETURNING id",
            ann,
            f"ann {n}",
            channels,
            "sent" if n < 4 else "pending",
            7 - n,
        )
    for n in range(3):
        ids[f"bob{n}"] = await db.fetchval(
            "INSERT INTO notifyd.notifications (user_id, message, status, run_after) "
            "VALUES ($1, 'bob', 'failed', now() + interval '1 day') RETURNING id",
            bob,
        )
    return {"ann": ann, "bob": bob, "ids": ids}


async def get(daemon: Daemon, path: str, **params: Any) -> dict[str, Any]:
    response = await daemon.client.get(path, params={k: str(v) for k, v in params.items()})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_newest_first_in_pages_that_cover_everything_once(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    data = await seed(db)
    seen: list[int] = []
    page = await get(daemon, "/api/notifications", limit=3)
    pages = 1
    while True:
        seen += [item["id"] for item in page["items"]]
        assert len(page["items"]) <= 3
        assert "attempts" not in page["items"][0]
        if page["next_cursor"] is None:
            break
        page = await get(daemon, "/api/notifications", limit=3, cursor=page["next_cursor"])
        pages += 1
    assert seen == sorted(data["ids"].values(), reverse=True)
    assert pages == 4


async def test_filters_combine(daemon: Daemon, db: asyncpg.Connection) -> None:
    data = await seed(db)
    ids = data["ids"]

    async def found(**params: Any) -> list[int]:
        return [i["id"] for i in (await get(daemon, "/api/notifications", **params))["items"]]

    assert await found(status="failed") == [ids["bob2"], ids["bob1"], ids["bob0"]]
    assert await found(user_id=data["ann"], status="pending") == [
        ids["ann6"],
        ids["ann5"],
        ids["ann4"],
    ]
    assert await found(user_id=data["ann"], channel="sms") == [
        ids["ann5"],
        ids["ann3"],
        ids["ann1"],
    ]
    # ann's n-th notification was created 7 - n hours ago.
    created = await db.fetchval(
        "SELECT created_at FROM notifyd.notifications WHERE id = $1", ids["ann2"]
    )
    assert await found(user_id=data["ann"], created_before=created.isoformat()) == [
        ids["ann1"],
        ids["ann0"],
    ]
    assert await found(user_id=data["ann"], created_after=created.isoformat(), status="sent") == [
        ids["ann3"],
        ids["ann2"],
    ]


async def test_a_users_notifications(daemon: Daemon, db: asyncpg.Connection) -> None:
    data = await seed(db)
    page = await get(daemon, f"/api/users/{data['bob']}/notifications", limit=2)
    assert [i["user_id"] for i in page["items"]] == [data["bob"]] * 2
    rest = await get(daemon, f"/api/users/{data['bob']}/notifications", cursor=page["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [data["ids"]["bob0"]]
    assert rest["next_cursor"] is None
    await assert_problem(await daemon.client.get("/api/users/999999/notifications"), 404)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("channel=fax", "channel"),
        ("user_id=abc", "user_id"),
        ("user_id=0", "user_id"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("created_after=yesterday", "created_after"),
        ("created_before=0.5", "created_before"),
        ("created_after=2026-11-30T12:00:00", "created_after"),  # no offset
        ("cursor=bm9wZQ", "cursor"),
        ("cursor=%%%", "cursor"),
        ("sort=id", "sort"),
        ("status=sent&status=failed", "status"),
    ],
)
async def test_a_bad_query_is_a_422_naming_the_parameter(
    daemon: Daemon, query: str, field: str
) -> None:
    response = await daemon.client.get(f"/api/notifications?{query}")
    await assert_problem(response, 422, field)


async def test_an_empty_table_is_an_empty_page(daemon: Daemon) -> None:
    assert await get(daemon, "/api/notifications") == {"items": [], "next_cursor": None}
