"""A change another site's page asks for is refused: the API's defence against CSRF.

Without API tokens (the default, on loopback) a page on any site could make its visitor's
browser post to the daemon: a POST with no body (cancel, retry) is a "simple" request
that browsers send without asking first, and its Host is the daemon's own, so the Host
allow-list lets it through. A page could cancel or send again any notification. Browsers
say where a request comes from (`Sec-Fetch-Site`, else `Origin`); a change that another
site asked for is now a 403, and nothing is written. Clients that are not browsers send
neither header and are not concerned.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.support import Daemon

REFUSED = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    # Another port of the same host, or a sibling subdomain: same site, another origin.
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
    # Browsers from before Sec-Fetch-Site: Origin alone.
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1.evil.example:8000"},
    # A sandboxed frame, or a page opened from a file.
    {"Origin": "null"},
]
ALLOWED = [
    {},  # curl, a library, another service
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},  # typed into the address bar, a bookmark
    {"Origin": "http://{host}"},
]


async def pending_notification(db: asyncpg.Connection) -> int:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    notification_id: int = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'm', '', ARRAY['sms'], '2999-01-01Z')", user_id
    )
    return notification_id


def with_host(headers: dict[str, str], daemon: Daemon) -> dict[str, str]:
    host = f"{daemon.client.host}:{daemon.client.port}"
    return {name: value.replace("{host}", host) for name, value in headers.items()}


@pytest.mark.parametrize("headers", REFUSED, ids=[str(h) for h in REFUSED])
async def test_another_sites_cancel_is_refused_and_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    notification_id = await pending_notification(db)

    for action in ("cancel", "retry"):
        response = await daemon.client.post(
            f"/api/notifications/{notification_id}/{action}",
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert response.status == 403, await response.text()
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        field = "Sec-Fetch-Site" if "Sec-Fetch-Site" in headers else "Origin"
        assert [error["field"] for error in problem["errors"]] == [field]

    status = await db.fetchval(
        "SELECT status FROM notifyd.notifications WHERE id = $1", notification_id
    )
    assert status == "pending"


@pytest.mark.parametrize("headers", REFUSED[:1], ids=["cross-site"])
async def test_every_change_is_refused_from_another_site(
    daemon: Daemon, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    notification_id = await pending_notification(db)
    user_id = await db.fetchval("SELECT user_id FROM notifyd.notifications")
    before = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    changes = [
        ("POST", "/api/notify/", {"user_id": user_id, "message": "m"}),
        ("POST", "/api/users/", {"phone": "+15557654321"}),
        ("PATCH", f"/api/users/{user_id}", {"phone": "+15557654321"}),
        ("DELETE", f"/api/users/{user_id}/suppressions/sms", None),
    ]
    for method, path, body in changes:
        response = await daemon.client.request(method, path, json=body, headers=headers)
        assert response.status == 403, (path, await response.text())
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == before
    assert await db.fetchval("SELECT count(*) FROM notifyd.users") == 1
    assert await db.fetchval("SELECT phone FROM notifyd.users") == "+15551234567"
    assert notification_id


@pytest.mark.parametrize("headers", ALLOWED, ids=[str(h) for h in ALLOWED])
async def test_a_change_from_this_origin_or_no_browser_is_made(
    daemon: Daemon, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    notification_id = await pending_notification(db)

    response = await daemon.client.post(
        f"/api/notifications/{notification_id}/cancel", headers=with_host(headers, daemon)
    )

    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "cancelled"


async def test_another_site_may_still_not_read_but_its_get_is_answered(daemon: Daemon) -> None:
    # Reading is the browser's same-origin policy's business (notifyd sends no CORS
    # headers); the Host allow-list keeps rebound pages out.
    response = await daemon.client.get("/api/notifications", headers=REFUSED[0])
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
