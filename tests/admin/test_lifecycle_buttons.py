"""The Cancel and Retry buttons of a notification's page, under the dashboard's form rules."""

from __future__ import annotations

import base64
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


async def test_the_webhooks_page_shows_endpoints_without_secrets(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    secret = "whsec_" + base64.b64encode(b"dashboard-test-secret-24b").decode()
    url = "http://127.0.0.1:9/hooks/tok-PATHSECRET?key=QSECRET"
    daemon = await daemon_factory(
        webhooks={"endpoints": [{"url": url, "secret": secret}], "poll_interval": 3600}
    )
    user = await insert_user(db, phone="+79001234567")
    notification_id = await insert_notification(db, user, status="sent", channels=("sms",))
    await db.execute(
        "UPDATE notifyd.webhook_events SET attempts = 3, last_error = $1",
        "http://127.0.0.1:9: answered HTTP 503",
    )
    response = await daemon.client.get("/admin/webhooks")
    html = await response.text()
    shown = await page(response)
    # The daemon, having an endpoint, switched recording on when it started.
    recording = shown.by_id("recording")
    assert "status events are recorded since" in recording.text()
    assert "1 endpoint(s) here" in recording.text()
    assert "recording-ok" in recording.attrs["class"].split()
    (endpoint,) = shown.by_id("endpoints").find_all("tr")[1:]
    assert "http://127.0.0.1:9" in endpoint.text()
    assert "answered HTTP 503" in endpoint.text()
    events = shown.by_id("events").find_all("tr")[1:]
    assert len(events) == 1
    assert f"#{notification_id}" in events[0].text()
    assert "notification.sent" in events[0].text()
    for hidden in ("PATHSECRET", "QSECRET", secret, secret[6:]):
        assert hidden not in html


async def test_the_webhooks_page_warns_of_events_recorded_for_no_endpoint(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory()
    response = await daemon.client.get("/admin/webhooks")
    recording = (await page(response)).by_id("recording")
    assert "recording-off" in recording.attrs["class"].split()
    assert "status events are not recorded" in recording.text()

    await db.execute(
        "INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ('app-2 (instance 9)')"
    )
    response = await daemon.client.get("/admin/webhooks")
    recording = (await page(response)).by_id("recording")
    assert "recording-warning" in recording.attrs["class"].split()
    assert recording.attrs["role"] == "note"
    assert "switched on by app-2 (instance 9)" in recording.text()
    assert "this instance has no endpoint" in recording.text()
    assert "notifyd webhooks off" in recording.text()
