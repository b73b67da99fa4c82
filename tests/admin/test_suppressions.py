"""The dashboard shows a user's suppressed contacts and lifts one with its form."""

from __future__ import annotations

import asyncpg

from tests.admin.support import insert_user, origin, page, rows
from tests.support import Daemon


async def _suppress(db: asyncpg.Connection, user_id: int, channel: str, reason: str) -> None:
    await db.execute(
        "INSERT INTO notifyd.suppressions (user_id, channel, contact, reason)"
        " VALUES ($1, $2, 'x', $3)",
        user_id,
        channel,
        reason,
    )


async def test_the_user_page_lists_suppressions_with_a_lift_form(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com", telegram_chat_id="4003")
    await _suppress(db, user_id, "telegram", "Telegram: <b>blocked</b> by the user")

    doc = await page(await daemon.client.get(f"/admin/users/{user_id}"))

    [row] = rows(doc.by_id("suppressions"))
    assert row[:2] == ["telegram", "Telegram: <b>blocked</b> by the user"]  # escaped, shown
    form = doc.by_id("lift-telegram")
    assert form.attrs["method"] == "post"
    assert form.attrs["action"] == f"/admin/users/{user_id}/suppressions/telegram"


async def test_a_user_without_suppressions_says_so(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await insert_user(db, email="ivan@example.com")

    doc = await page(await daemon.client.get(f"/admin/users/{user_id}"))

    assert not doc.has_id("suppressions")
    assert doc.by_id("no-suppressions").text() == "None: every contact is tried."


async def test_lifting_from_the_dashboard(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await insert_user(db, email="ivan@example.com", telegram_chat_id="4003")
    await _suppress(db, user_id, "telegram", "blocked")
    await _suppress(db, user_id, "email", "no such mailbox")

    response = await daemon.client.post(
        f"/admin/users/{user_id}/suppressions/telegram",
        headers=origin(daemon),
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/admin/users/{user_id}?lifted=telegram"
    left = await db.fetch("SELECT channel FROM notifyd.suppressions WHERE user_id = $1", user_id)
    assert [r["channel"] for r in left] == ["email"]
    doc = await page(await daemon.client.get(response.headers["Location"]))
    assert doc.by_id("lifted").text() == "Lifted: telegram is tried again."
    assert [row[0] for row in rows(doc.by_id("suppressions"))] == ["email"]


async def test_a_cross_site_post_lifts_nothing(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await insert_user(db, telegram_chat_id="4003")
    await _suppress(db, user_id, "telegram", "blocked")

    response = await daemon.client.post(
        f"/admin/users/{user_id}/suppressions/telegram",
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )

    assert response.status == 403
    assert await db.fetchval("SELECT count(*) FROM notifyd.suppressions") == 1


async def test_lifting_what_is_not_there_is_a_404_page(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")

    none_there = await daemon.client.post(
        f"/admin/users/{user_id}/suppressions/email", headers=origin(daemon)
    )
    unknown_channel = await daemon.client.post(
        f"/admin/users/{user_id}/suppressions/fax", headers=origin(daemon)
    )

    assert none_there.status == 404
    assert unknown_channel.status == 404


async def test_an_unknown_lifted_value_in_the_url_shows_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")

    doc = await page(await daemon.client.get(f"/admin/users/{user_id}?lifted=<script>"))

    assert not doc.has_id("lifted")


async def test_a_new_contact_saved_from_the_form_lifts_its_suppression(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com", telegram_chat_id="4003")
    await _suppress(db, user_id, "telegram", "blocked")
    await _suppress(db, user_id, "email", "no such mailbox")

    response = await daemon.client.post(
        f"/admin/users/{user_id}",
        data={"email": "ivan@example.com", "phone": "", "telegram_chat_id": "1001"},
        headers=origin(daemon),
        allow_redirects=False,
    )

    assert response.status == 303
    left = await db.fetch("SELECT channel FROM notifyd.suppressions WHERE user_id = $1", user_id)
    assert [r["channel"] for r in left] == ["email"]  # that address was saved unchanged
