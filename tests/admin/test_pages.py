"""The dashboard's pages, over HTTP against the in-process daemon (no tokens: open)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from notifyd.errors import DatabaseUnavailableError
from notifyd.web.keys import DATABASE
from tests.admin.support import (
    insert_attempt,
    insert_notification,
    insert_user,
    origin,
    page,
    rows,
)
from tests.support import Daemon


async def test_admin_without_a_slash_goes_to_the_list(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/admin/"


async def test_list_shows_notifications_newest_first_with_links(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    first = await insert_notification(db, user_id, subject="First", status="sent")
    second = await insert_notification(db, user_id, subject="Second", status="failed")

    doc = await page(await daemon.client.get("/admin/"))

    listed = rows(doc.by_id("notifications"))
    assert [row[0] for row in listed] == [str(second), str(first)]
    assert listed[0][1] == "failed"
    assert listed[0][2] == str(user_id)
    assert listed[0][3] == "Second"
    links = {a.attrs["href"] for a in doc.by_id("notifications").find_all("a")}
    assert f"/admin/notifications/{first}" in links
    assert f"/admin/users/{user_id}" in links
    assert doc.by_id("counts")  # the header is on every page
    assert doc.has_id("older") is False


async def test_every_page_has_the_counts_header(daemon: Daemon, db: asyncpg.Connection) -> None:
    user_id = await insert_user(db, phone="+15551234567")
    notification_id = await insert_notification(db, user_id)
    for path in ("/admin/", f"/admin/notifications/{notification_id}", "/admin/users"):
        doc = await page(await daemon.client.get(path))
        assert doc.has_id("count-pending"), path
        assert doc.has_id("rate-email"), path
    doc = await page(await daemon.client.get(f"/admin/users/{user_id}"))
    assert doc.has_id("count-failed")


async def test_counts_are_pending_now_and_the_last_hour_by_channel(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="a@example.com")
    # Pending: not due for an hour, so the dispatcher leaves them.
    for _ in range(3):
        await db.execute(
            "INSERT INTO notifyd.notifications (user_id, message, send_at) "
            "VALUES ($1, 'later', now() + interval '1 hour')",
            user_id,
        )
    for _ in range(2):
        await insert_notification(db, user_id, status="sent")
    await insert_notification(db, user_id, status="failed")
    # Finished two hours ago: outside the window.
    old = await insert_notification(db, user_id, status="sent", finished_ago=timedelta(hours=2))
    await insert_notification(db, user_id, status="failed", finished_ago=timedelta(hours=2))
    recent = await insert_notification(db, user_id, status="sent")
    for attempt, status in enumerate(["failed", "failed", "failed", "success"], start=1):
        await insert_attempt(db, recent, "email", attempt, status)
    await insert_attempt(db, recent, "sms", 1, "success")
    await insert_attempt(db, recent, "sms", 2, "success")
    two_hours_ago = await db.fetchval("SELECT now() - interval '2 hours'")
    await insert_attempt(db, old, "telegram", 1, "failed", started_at=two_hours_ago)

    doc = await page(await daemon.client.get("/admin/"))

    def value(element_id: str) -> str:
        return doc.by_id(element_id).by_class("value")[0].text()

    assert value("count-pending") == "3"
    assert value("count-sent") == "3"
    assert value("count-failed") == "1"
    assert value("rate-email") == "25.0%"
    assert "1 of 4 attempts" in doc.by_id("rate-email").text()
    assert value("rate-sms") == "100%"
    assert value("rate-telegram") == "—"  # its only attempt is two hours old
    assert "0 of 0 attempts" in doc.by_id("rate-telegram").text()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=failed", ["tg-only", "failed-a"]),
        ("status=sent", ["sent-b", "sent-a"]),
        ("channel=telegram", ["tg-only"]),
        ("status=&user_id=&channel=", ["tg-only", "sent-b", "failed-a", "sent-a"]),
    ],
    ids=["failed", "sent", "channel", "empty-fields"],
)
async def test_list_filters_by_status_and_channel(
    daemon: Daemon, db: asyncpg.Connection, query: str, expected: list[str]
) -> None:
    user_id = await insert_user(db, email="a@example.com")
    await insert_notification(db, user_id, subject="sent-a", status="sent", channels=("email",))
    await insert_notification(db, user_id, subject="failed-a", status="failed", channels=("sms",))
    await insert_notification(db, user_id, subject="sent-b", status="sent", channels=("email",))
    await insert_notification(
        db, user_id, subject="tg-only", status="failed", channels=("telegram",)
    )

    doc = await page(await daemon.client.get(f"/admin/?{query}"))

    assert [row[3] for row in rows(doc.by_id("notifications"))] == expected


async def test_list_searches_by_user(daemon: Daemon, db: asyncpg.Connection) -> None:
    ivan = await insert_user(db, email="ivan@example.com")
    olga = await insert_user(db, email="olga@example.com")
    await insert_notification(db, ivan, subject="for ivan")
    await insert_notification(db, olga, subject="for olga")

    doc = await page(await daemon.client.get(f"/admin/?user_id={olga}"))

    assert [row[3] for row in rows(doc.by_id("notifications"))] == ["for olga"]
    assert doc.by_id("filters").find_all("input")[0].attrs["value"] == str(olga)


@pytest.mark.parametrize(
    ("query", "field"),
    [("user_id=abc", "user_id"), ("status=lost", "status"), ("cursor=nonsense", "cursor")],
)
async def test_a_bad_filter_is_named_on_the_page(daemon: Daemon, query: str, field: str) -> None:
    doc = await page(await daemon.client.get(f"/admin/?{query}"), status=400)
    assert field in doc.by_id("query-errors").text()
    assert rows(doc.by_id("notifications")) == []


async def test_list_pages_with_a_cursor_keeping_the_filters(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="a@example.com")
    sent = [await insert_notification(db, user_id, status="sent") for _ in range(5)]
    await insert_notification(db, user_id, status="failed")

    seen: list[str] = []
    url = "/admin/?status=sent&limit=2"
    pages = 0
    while url:
        doc = await page(await daemon.client.get(url))
        seen += [row[0] for row in rows(doc.by_id("notifications"))]
        pages += 1
        if pages > 1:
            newest = doc.by_id("newest").attrs["href"]
            assert parse_qs(urlsplit(newest).query) == {"status": ["sent"], "limit": ["2"]}
        url = doc.by_id("older").attrs["href"] if doc.has_id("older") else ""
        if url:
            assert parse_qs(urlsplit(url).query)["status"] == ["sent"]
    assert seen == [str(n) for n in reversed(sent)]
    assert pages == 3


async def test_detail_shows_the_attempts_as_a_timeline(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, phone="+15551234567")
    created = await db.fetchval("SELECT now() - interval '10 seconds'")
    notification_id = await insert_notification(
        db,
        user_id,
        subject="Привет!",
        message="Тестовое уведомление\nsecond line",
        channels=("email", "sms"),
        created_at=created,
    )
    await insert_attempt(
        db,
        notification_id,
        "email",
        1,
        "failed",
        started_at=created + timedelta(milliseconds=5),
        duration=timedelta(milliseconds=250),
        error="SMTP connection failed: Connect call failed",
        transient=True,
    )
    await insert_attempt(
        db,
        notification_id,
        "email",
        2,
        "failed",
        started_at=created + timedelta(seconds=2, milliseconds=255),
        duration=timedelta(milliseconds=3),
        error="user has no email",
        transient=False,
    )
    await insert_attempt(
        db,
        notification_id,
        "sms",
        1,
        "success",
        started_at=created + timedelta(seconds=3),
        duration=timedelta(seconds=1, milliseconds=500),
        provider_response={"provider": "stub", "status": "accepted", "to": "+15551234567"},
    )

    doc = await page(await daemon.client.get(f"/admin/notifications/{notification_id}"))

    assert doc.by_id("subject").text() == "Привет!"
    assert "second line" in doc.by_id("message").text()
    assert doc.by_id("status").text() == "sent"
    entries = doc.by_id("timeline").find_all("li")
    assert len(entries) == 3
    first, second, third = (entry.text() for entry in entries)
    assert first.startswith("email attempt 1 failed transient 250.0 ms")
    assert "SMTP connection failed: Connect call failed" in first
    assert "(+5.0 ms)" in first  # from the notification's creation
    assert "Waited" not in first
    assert second.startswith("email attempt 2 failed permanent 3.0 ms")
    assert "Waited 2.00 s after the previous attempt" in second
    assert third.startswith("sms attempt 1 success 1.50 s")
    response = entries[2].by_class("provider-response")[0].find_all("pre")[0]
    assert response.children == [
        '{\n  "provider": "stub",\n  "status": "accepted",\n  "to": "+15551234567"\n}'
    ]
    assert not entries[2].by_class("attempt-error")


async def test_detail_of_a_notification_without_attempts(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="a@example.com")
    notification_id = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, send_at) "
        "VALUES ($1, 'later', now() + interval '1 day') RETURNING id",
        user_id,
    )
    doc = await page(await daemon.client.get(f"/admin/notifications/{notification_id}"))
    assert doc.by_id("timeline").text() == "No attempts yet."
    assert doc.by_id("status").text() == "pending"


@pytest.mark.parametrize(
    "path", ["/admin/notifications/424242", "/admin/users/424242", "/admin/no-such-page"]
)
async def test_unknown_things_are_an_html_404(daemon: Daemon, path: str) -> None:
    doc = await page(await daemon.client.get(path), status=404)
    assert "Not Found" in doc.find_all("h1")[0].text() or "Not found" in doc.text()


async def test_users_list_pages_by_id(daemon: Daemon, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO notifyd.users (email) "
        "SELECT 'user' || n || '@example.com' FROM generate_series(1, 53) AS n"
    )
    doc = await page(await daemon.client.get("/admin/users"))
    listed = rows(doc.by_id("users"))
    assert len(listed) == 50
    assert listed[0][:2] == ["1", "user1@example.com"]
    assert listed[0][2:4] == ["—", "—"]
    following = doc.by_id("next").attrs["href"]
    assert following == "/admin/users?after=50"
    doc = await page(await daemon.client.get(following))
    assert [row[0] for row in rows(doc.by_id("users"))] == ["51", "52", "53"]
    assert not doc.has_id("next")
    assert doc.by_id("first").attrs["href"] == "/admin/users"


async def test_users_list_opens_a_user_by_id(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin/users?user_id=7", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/admin/users/7"
    doc = await page(await daemon.client.get("/admin/users?user_id=x7"), status=400)
    assert "user_id" in doc.by_id("query-errors").text()
    doc = await page(await daemon.client.get("/admin/users?after=-1"), status=400)
    assert "after" in doc.by_id("query-errors").text()


async def test_user_page_shows_contacts_and_recent_notifications(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(
        db, email="ivan@example.com", phone="+79001234567", telegram_chat_id="123456789"
    )
    other = await insert_user(db, email="olga@example.com")
    mine = await insert_notification(db, user_id, subject="for ivan")
    await insert_notification(db, other, subject="for olga")

    doc = await page(await daemon.client.get(f"/admin/users/{user_id}"))

    form = doc.by_id("contacts")
    assert form.attrs["action"] == f"/admin/users/{user_id}"
    values = {node.attrs["name"]: node.attrs["value"] for node in form.find_all("input")}
    assert values == {
        "email": "ivan@example.com",
        "phone": "+79001234567",
        "telegram_chat_id": "123456789",
    }
    recent = rows(doc.by_id("recent"))
    assert [row[0] for row in recent] == [str(mine)]
    assert doc.by_id("all-notifications").attrs["href"] == f"/admin/?user_id={user_id}"


async def test_editing_contacts_saves_them_and_blank_clears(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com", phone="+79001234567")

    response = await daemon.client.post(
        f"/admin/users/{user_id}",
        data={"email": " new@example.com ", "phone": "", "telegram_chat_id": "@notifyd_news"},
        headers=origin(daemon),
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/admin/users/{user_id}?saved=1"
    row = await db.fetchrow("SELECT * FROM notifyd.users WHERE id = $1", user_id)
    assert (row["email"], row["phone"], row["telegram_chat_id"]) == (
        "new@example.com",
        None,
        "@notifyd_news",
    )
    doc = await page(await daemon.client.get(response.headers["Location"]))
    assert doc.by_id("saved").text() == "Saved."
    assert doc.by_id("email").attrs["value"] == "new@example.com"


@pytest.mark.parametrize(
    ("form", "bad"),
    [
        ({"email": "not-an-address", "phone": "+79001234567"}, {"email"}),
        ({"email": "ok@example.com", "phone": "89001234567"}, {"phone"}),
        ({"telegram_chat_id": "12ab"}, {"telegram_chat_id"}),
        (
            {"email": "a b@c", "phone": "+0", "telegram_chat_id": "@x"},
            {"email", "phone", "telegram_chat_id"},
        ),
        ({"email": "nul\x00@example.com"}, {"email"}),
    ],
    ids=["email", "phone", "chat-id", "all-three", "nul"],
)
async def test_bad_contacts_are_named_next_to_the_field_and_nothing_is_written(
    daemon: Daemon, db: asyncpg.Connection, form: dict[str, str], bad: set[str]
) -> None:
    user_id = await insert_user(db, email="ivan@example.com", phone="+79001234567")
    before = await db.fetchrow("SELECT * FROM notifyd.users WHERE id = $1", user_id)

    response = await daemon.client.post(
        f"/admin/users/{user_id}", data=form, headers=origin(daemon), allow_redirects=False
    )

    doc = await page(response, status=422)
    assert doc.has_id("form-errors")
    for field in ("email", "phone", "telegram_chat_id"):
        assert doc.has_id(f"error-{field}") is (field in bad), field
    for field in bad:
        assert doc.by_id(field).attrs["aria-invalid"] == "true"
        assert doc.by_id(f"error-{field}").text().startswith("must ")
    # What was typed stays in the form to be corrected.
    for field, value in form.items():
        assert doc.by_id(field).attrs["value"] == value.strip()
    after = await db.fetchrow("SELECT * FROM notifyd.users WHERE id = $1", user_id)
    assert after == before


async def test_a_form_without_any_field_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    response = await daemon.client.post(
        f"/admin/users/{user_id}", data={"other": "x"}, headers=origin(daemon)
    )
    doc = await page(response, status=422)
    assert "at least one" in doc.by_id("error-body").text()
    assert await db.fetchval("SELECT email FROM notifyd.users WHERE id = $1", user_id) == (
        "ivan@example.com"
    )


async def test_editing_an_unknown_user_is_a_404(daemon: Daemon) -> None:
    response = await daemon.client.post(
        "/admin/users/424242", data={"email": "a@example.com"}, headers=origin(daemon)
    )
    await page(response, status=404)


async def test_pages_forbid_scripts_frames_and_caching(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin/")
    assert response.status == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # so default-src 'none' forbids every script
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_stylesheet_is_served_from_the_package(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin/static/admin.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    assert ".timeline" in await response.text()


async def test_the_open_dashboard_says_it_is_open(daemon: Daemon) -> None:
    doc = await page(await daemon.client.get("/admin/"))
    assert "open to anyone" in doc.by_class("open-warning")[0].text()
    assert not doc.find_all("form") or not any(
        form.attrs.get("action") == "/admin/logout" for form in doc.find_all("form")
    )


async def test_a_database_outage_is_an_html_503(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(*_args: object) -> None:
        raise DatabaseUnavailableError("database unavailable: ConnectionRefusedError")

    monkeypatch.setattr(daemon.app[DATABASE].dashboard, "counts", unavailable)
    response = await daemon.client.get("/admin/users")
    doc = await page(response, status=503)
    assert response.headers["Retry-After"] == "5"
    assert doc.find_all("h1")[0].text() == "Database unavailable"
    assert "ConnectionRefusedError" not in doc.text()
    assert doc.by_class("sections")  # the way back is still there
