"""The Cancel and Retry buttons of a notification's page, under the dashboard's form rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tests.admin.support import insert_attempt, insert_notification, insert_user, origin, page
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def status_of(db: asyncpg.Connection, notification_id: int) -> Any:
    return await db.fetchrow(
        "SELECT status, round FROM notifyd.notifications WHERE id = $1", notification_id
    )


async def test_retry_then_cancel_from_the_page(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory()
    user = await insert_user(db, phone="+79001234567")
    failed = await insert_notification(db, user, status="failed", channels=("sms",))
    await insert_attempt(db, failed, "sms", 1, "failed", error="down", transient=True)
    # Not due for a while once retried, so the page shows it pending.
    await db.execute(
        "UPDATE notifyd.notifications SET send_at = now() + interval '1 hour' WHERE id = $1",
        failed,
    )

    shown = await page(await daemon.client.get(f"/admin/notifications/{failed}"))
    assert shown.has_id("retry")
    assert not shown.has_id("cancel")

    response = await daemon.client.post(
        f"/admin/notifications/{failed}/retry", headers=origin(daemon), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/admin/notifications/{failed}?done=retry"
    assert tuple(await status_of(db, failed)) == ("pending", 2)
    shown = await page(await daemon.client.get(response.headers["Location"]))
    assert "round 2" in shown.by_id("done").text()
    assert shown.has_id("cancel")
    assert [r.text() for r in shown.by_class("round")] == ["round 1"]

    response = await daemon.client.post(
        f"/admin/notifications/{failed}/cancel", headers=origin(daemon), allow_redirects=False
    )
    assert response.status == 303
    assert (await status_of(db, failed))["status"] == "cancelled"

    # Cancelled already: refused, naming the status, and nothing changes.
    response = await daemon.client.post(
        f"/admin/notifications/{failed}/cancel", headers=origin(daemon)
    )
    shown = await page(response, status=409)
    assert "is cancelled" in shown.by_id("refused").text()
    metrics = await daemon.metrics()
    assert metrics[("notifyd_lifecycle_requests_total", (("action", "retry"),))] == 1
    assert metrics[("notifyd_lifecycle_requests_total", (("action", "cancel"),))] == 1


async def test_a_cross_site_post_changes_nothing(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory()
    user = await insert_user(db, phone="+79001234567")
    failed = await insert_notification(db, user, status="failed", channels=("sms",))
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = await daemon.client.post(
            f"/admin/notifications/{failed}/retry", headers=headers, allow_redirects=False
        )
        assert response.status == 403
    assert tuple(await status_of(db, failed)) == ("failed", 1)


async def test_an_unknown_notification(daemon_factory: DaemonFactory) -> None:
    daemon = await daemon_factory()
    response = await daemon.client.post(
        "/admin/notifications/424242/cancel", headers=origin(daemon)
    )
    assert response.status == 404
