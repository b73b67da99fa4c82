"""POST /api/notifications/{id}/cancel and /retry against a running daemon, real SMTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.fakes.smtp import FakeSmtpServer
from tests.support import Daemon, samples, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def post(daemon: Daemon, notification_id: int, action: str) -> tuple[int, dict[str, Any]]:
    response = await daemon.client.post(f"/api/notifications/{notification_id}/{action}")
    return response.status, await response.json(content_type=None)


async def status_of(daemon: Daemon, notification_id: int) -> str:
    return str((await daemon.notification(notification_id))["status"])


async def test_cancel_of_a_scheduled_notification(daemon: Daemon) -> None:
    user = await daemon.create_user(email="ivan@example.com")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    notification = await daemon.notify(user_id=user, message="later", send_at=later)
    status, body = await post(daemon, notification["id"], "cancel")
    assert status == 200, body
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert body["attempts"] == []
    # As GET answers it.
    assert body == await daemon.notification(notification["id"])


async def test_cancel_of_a_pending_notification_never_delivers_it(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory()
    user = await daemon.create_user(email="ivan@example.com")
    # Pending and not yet due (no send_at): nothing claims it before the cancel.
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, run_after)"
        " VALUES ($1, 'held back', now() + interval '1 hour')",
        user,
    )
    notification_id = await db.fetchval("SELECT max(id) FROM notifyd.notifications")
    status, body = await post(daemon, notification_id, "cancel")
    assert (status, body["status"]) == (200, "cancelled")
    await db.execute(
        "UPDATE notifyd.notifications SET run_after = now() WHERE id = $1", notification_id
    )
    # A later notification to the same address goes out; the cancelled one never does.
    later = await daemon.notify(user_id=user, message="after", channels=["email"])
    await daemon.wait_finished(later["id"])
    assert [m.get_content().strip() for m in smtp_server.messages] == ["after"]
    assert await status_of(daemon, notification_id) == "cancelled"


async def test_cancel_while_an_attempt_is_under_way_that_then_succeeds(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer
) -> None:
    smtp_server.mode = "slow"
    smtp_server.delay = 1.0
    daemon = await daemon_factory(channels={"email": {"timeout": 20}})
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    notification = await daemon.notify(user_id=user, message="hi", channels=["email", "sms"])

    async def attempting() -> bool:
        return smtp_server.connection_count >= 1

    await wait_until(attempting, what="the e-mail attempt to start")
    status, body = await post(daemon, notification["id"], "cancel")
    assert status == 200, body
    assert body["status"] == "processing"
    assert body["cancel_requested_at"] is not None
    finished = await daemon.wait_finished(notification["id"], deadline=20)
    assert finished["status"] == "sent"
    assert [(a["channel"], a["status"]) for a in finished["attempts"]] == [("email", "success")]


async def test_cancel_while_an_attempt_is_under_way_that_then_fails(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer
) -> None:
    # The attempt times out (transient): without the cancel, e-mail would be tried again,
    # then SMS.
    smtp_server.mode = "slow"
    smtp_server.delay = 60.0
    daemon = await daemon_factory(channels={"email": {"timeout": 1.5}})
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    notification = await daemon.notify(user_id=user, message="hi", channels=["email", "sms"])

    async def attempting() -> bool:
        return smtp_server.connection_count >= 1

    await wait_until(attempting, what="the e-mail attempt to start")
    status, body = await post(daemon, notification["id"], "cancel")
    assert (status, body["status"]) == (200, "processing")
    finished = await daemon.wait_finished(notification["id"], deadline=20)
    assert finished["status"] == "cancelled"
    assert [(a["channel"], a["status"]) for a in finished["attempts"]] == [("email", "failed")]
    # A second cancel: final now.
    status, body = await post(daemon, notification["id"], "cancel")
    assert status == 409
    metrics = samples(await (await daemon.client.get("/metrics")).text())
    assert metrics[("notifyd_notifications_finished_total", (("status", "cancelled"),))] == 1
    assert metrics[("notifyd_lifecycle_requests_total", (("action", "cancel"),))] == 1


async def test_final_notifications_and_unknown_ids(daemon: Daemon) -> None:
    user = await daemon.create_user(phone="+79001234567")
    notification = await daemon.notify(user_id=user, message="hi", channels=["sms"])
    sent = await daemon.wait_finished(notification["id"])
    assert sent["status"] == "sent"
    for action in ("cancel", "retry"):
        status, body = await post(daemon, notification["id"], action)
        assert status == 409, body
        assert "sent" in body["detail"]
        assert body["errors"] == [{"field": "status", "message": "is sent"}]
        status, body = await post(daemon, 987654, action)
        assert status == 404, body
    assert await daemon.notification(notification["id"]) == sent


async def test_retry_after_the_vendor_recovers_keeps_the_earlier_attempts(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer
) -> None:
    smtp_server.mode = "tempfail"
    daemon = await daemon_factory(delivery={"max_attempts": 2})
    user = await daemon.create_user(email="ivan@example.com")
    notification = await daemon.notify(user_id=user, message="hi", channels=["email"])
    failed = await daemon.wait_finished(notification["id"])
    assert failed["status"] == "failed"
    # Pending, not final: a retry now is refused.
    status, body = await post(daemon, notification["id"], "cancel")
    assert status == 409

    smtp_server.mode = "accept"
    status, body = await post(daemon, notification["id"], "retry")
    assert status == 200, body
    assert (body["status"], body["round"], body["finished_at"]) == ("pending", 2, None)
    sent = await daemon.wait_finished(notification["id"])
    assert sent["status"] == "sent"
    assert [(a["round"], a["attempt"], a["status"]) for a in sent["attempts"]] == [
        (1, 1, "failed"),
        (1, 2, "failed"),
        (2, 1, "success"),
    ]
    assert len(smtp_server.messages) == 1


async def test_retry_of_a_cancelled_notification_delivers_it(daemon: Daemon) -> None:
    user = await daemon.create_user(phone="+79001234567")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    notification = await daemon.notify(user_id=user, message="x", channels=["sms"], send_at=later)
    assert (await post(daemon, notification["id"], "cancel"))[0] == 200
    # Retried, it waits for its send_at again.
    status, body = await post(daemon, notification["id"], "retry")
    assert (status, body["status"]) == (200, "pending")
    now = datetime.now(UTC).isoformat()
    immediate = await daemon.notify(user_id=user, message="y", channels=["sms"], send_at=now)
    await daemon.wait_finished(immediate["id"])
    assert await status_of(daemon, notification["id"]) == "pending"


async def test_cancel_during_a_backoff_ends_it_without_waiting_it_out(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer
) -> None:
    smtp_server.mode = "tempfail"
    # Ten minutes between attempts: only the cancel can end the wait within the test.
    daemon = await daemon_factory(delivery={"backoff_initial": 600, "backoff_max": 600})
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    notification = await daemon.notify(user_id=user, message="hi", channels=["email", "sms"])

    async def first_attempt_written() -> bool:
        return len((await daemon.notification(notification["id"]))["attempts"]) == 1

    await wait_until(first_attempt_written, what="the first attempt")
    status, body = await post(daemon, notification["id"], "cancel")
    assert (status, body["status"]) == (200, "processing")
    finished = await daemon.wait_finished(notification["id"], deadline=15)
    assert finished["status"] == "cancelled"
    assert len(finished["attempts"]) == 1
