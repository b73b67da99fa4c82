"""Status webhooks end to end: a running daemon, a real receiver verifying every request with
the Standard Webhooks library, the outbox in PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.support import Daemon, samples, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


def webhooks(*endpoints: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A fast `[webhooks]` section for tests."""
    return {
        "endpoints": list(endpoints),
        "poll_interval": 0.05,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "timeout": 2.0,
        **settings,
    }


async def delivered(receiver: WebhookReceiver, count: int, deadline: float = 20.0) -> None:
    async def enough() -> bool:
        return len(receiver.delivered()) >= count

    await wait_until(enough, deadline=deadline, what=f"{count} events delivered")


async def outbox(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, type, notification_id, status, attempts, last_error, delivered_to"
        " FROM notifyd.webhook_events ORDER BY id"
    )


async def test_each_final_status_is_told_signed_with_the_notification(
    receiver: WebhookReceiver,
    daemon_factory: DaemonFactory,
    smtp_server: FakeSmtpServer,
    db: asyncpg.Connection,
) -> None:
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint()))
    user = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    sent = await daemon.notify(user_id=user, message="hi", channels=["sms"])
    smtp_server.mode = "reject"
    failed = await daemon.notify(user_id=user, message="no", channels=["email"])
    await daemon.wait_finished(sent["id"])
    await daemon.wait_finished(failed["id"])
    # Cancelled in SQL, as another application would.
    scheduled = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'later', '', ARRAY['sms'], now() + interval '1 hour')", user
    )
    assert await db.fetchval("SELECT notifyd.cancel($1)", scheduled) is True
    await delivered(receiver, 3)

    assert receiver.forged == 0
    events = {body["data"]["id"]: body for body in receiver.bodies().values()}
    assert {n: events[n]["type"] for n in events} == {
        sent["id"]: "notification.sent",
        failed["id"]: "notification.failed",
        scheduled: "notification.cancelled",
    }
    # `data` is the notification as GET answers it, attempts included.
    assert events[sent["id"]]["data"] == await daemon.notification(sent["id"])
    assert [a["status"] for a in events[failed["id"]]["data"]["attempts"]] == ["failed"]
    rows = await outbox(db)
    assert [r["status"] for r in rows] == ["delivered"] * 3
    assert {f"evt_{r['id']}" for r in rows} == set(receiver.delivered())
    assert set(receiver.delivered().values()) == {1}


async def test_an_endpoint_down_then_up_gets_every_event(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    receiver.set_mode("unavailable")
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint()))
    user = await daemon.create_user(phone="+79001234567")
    ids = [
        (await daemon.notify(user_id=user, message=f"m{n}", channels=["sms"]))["id"]
        for n in range(5)
    ]
    for notification_id in ids:
        await daemon.wait_finished(notification_id)

    async def refused_twice() -> bool:
        rows = await outbox(db)
        return len(rows) == 5 and all(r["attempts"] >= 2 for r in rows)

    await wait_until(refused_twice, deadline=20, what="each event tried and refused twice")
    rows = await outbox(db)
    assert {r["status"] for r in rows} == {"pending"}
    # Refused, or not asked again while the endpoint is paused after refusing.
    assert all("answered HTTP 503" in r["last_error"] or "paused" in r["last_error"] for r in rows)
    refused_ids = {r.webhook_id for r in receiver.received}

    receiver.set_mode("ok")
    await delivered(receiver, 5)
    # The same webhook-id at every retry, and each delivered once.
    assert set(receiver.delivered()) == {f"evt_{r['id']}" for r in rows}
    assert refused_ids <= set(receiver.delivered())
    assert set(receiver.delivered().values()) == {1}
    assert receiver.forged == 0
    metrics = samples(await (await daemon.client.get("/metrics")).text())
    assert metrics[("notifyd_webhook_requests_total", (("result", "delivered"),))] == 5
    # At least one refusal per event was recorded; fewer requests than that were made,
    # since a refusing endpoint is paused rather than asked again for each event.
    assert metrics[("notifyd_webhook_requests_total", (("result", "failed"),))] >= 1


async def test_a_receiver_that_hangs_costs_timeouts_not_delivery(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    receiver.set_mode("hang")
    daemon = await daemon_factory(
        webhooks=webhooks(receiver.endpoint(), timeout=0.5, concurrency=2)
    )
    user = await daemon.create_user(phone="+79001234567")
    ids = [
        (await daemon.notify(user_id=user, message=f"m{n}", channels=["sms"]))["id"]
        for n in range(20)
    ]
    # Every notification is delivered while the endpoint hangs.
    for notification_id in ids:
        assert (await daemon.wait_finished(notification_id))["status"] == "sent"

    async def timed_out() -> bool:
        rows = await outbox(db)
        return any(r["last_error"] and "timed out" in r["last_error"] for r in rows)

    await wait_until(timed_out, deadline=20, what="a request to time out")
    # Never more requests at once than webhooks.concurrency; a paused endpoint is not
    # asked again for every new event.
    assert receiver.most_at_once <= 2
    assert receiver.requests < 20
    await receiver.set_mode_when_idle("ok")
    await delivered(receiver, 20, deadline=30)
    assert set(receiver.delivered().values()) == {1}


async def test_two_instances_send_each_event_once(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    section = webhooks(receiver.endpoint(), poll_interval=0.01)
    first = await daemon_factory(webhooks=section)
    second = await daemon_factory(webhooks=section)
    user = await first.create_user(phone="+79001234567")
    ids = []
    for n in range(40):
        daemon = first if n % 2 else second
        ids.append((await daemon.notify(user_id=user, message=f"m{n}", channels=["sms"]))["id"])
    await delivered(receiver, 40, deadline=30)
    assert set(receiver.delivered().values()) == {1}
    assert receiver.requests == 40
    rows = await outbox(db)
    assert sorted(r["notification_id"] for r in rows) == sorted(ids)
    assert {r["attempts"] for r in rows} == {1}


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    receiver.set_mode("redirect")
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint()))
    user = await daemon.create_user(phone="+79001234567")
    await daemon.notify(user_id=user, message="m", channels=["sms"])

    async def refused() -> bool:
        rows = await outbox(db)
        return bool(rows) and rows[0]["last_error"] is not None

    await wait_until(refused, deadline=20, what="the redirect to count as a failure")
    assert "answered HTTP 307" in (await outbox(db))[0]["last_error"]
    # Nothing was posted to where the redirect pointed.
    assert all(r.answered == 307 for r in receiver.received)


async def test_after_retry_for_the_event_is_marked_failed_and_kept(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    receiver.set_mode("unavailable")
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint(), retry_for=0.5))
    user = await daemon.create_user(phone="+79001234567")
    await daemon.notify(user_id=user, message="m", channels=["sms"])

    async def given_up() -> bool:
        rows = await outbox(db)
        return bool(rows) and rows[0]["status"] == "failed"

    await wait_until(given_up, deadline=20, what="the event to be given up")
    metrics = samples(await (await daemon.client.get("/metrics")).text())
    assert metrics[("notifyd_webhook_events_given_up_total", ())] == 1


async def test_an_endpoint_gets_only_the_events_it_wants(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(
        webhooks=webhooks(receiver.endpoint(events=["notification.cancelled"]))
    )
    user = await daemon.create_user(phone="+79001234567")
    sent = await daemon.notify(user_id=user, message="m", channels=["sms"])
    await daemon.wait_finished(sent["id"])
    scheduled = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'later', '', ARRAY['sms'], now() + interval '1 hour')", user
    )
    await db.fetchval("SELECT notifyd.cancel($1)", scheduled)
    await delivered(receiver, 1)

    async def settled() -> bool:
        return {r["status"] for r in await outbox(db)} == {"delivered"}

    await wait_until(settled, what="both events settled")
    assert [b["type"] for b in receiver.bodies().values()] == ["notification.cancelled"]


async def test_garbage_in_the_outbox_written_by_another_application(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    # Rows the schema allows, with odd values: an unknown notification, a huge attempt
    # count, endpoints that do not exist in delivered_to, a created_at long past (for
    # notification 1, which is about to be sent).
    await db.execute(
        """
        INSERT INTO notifyd.webhook_events (type, notification_id, attempts, delivered_to)
        VALUES ('notification.sent', 9223372036854775807, 2147483647, '{x,y}'),
               ('notification.failed', -5, 0, '{}')
        """
    )
    await db.execute(
        "INSERT INTO notifyd.webhook_events (type, notification_id, created_at)"
        " VALUES ('notification.sent', 1, '1970-01-01')"
    )
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint()))
    user = await daemon.create_user(phone="+79001234567")
    sent = await daemon.notify(user_id=user, message="m", channels=["sms"])
    await daemon.wait_finished(sent["id"])
    await delivered(receiver, 1)

    async def settled() -> bool:
        rows = await outbox(db)
        return [r["status"] for r in rows[:2]] == ["failed", "failed"]

    await wait_until(settled, what="the garbage rows to be settled")
    rows = await outbox(db)
    assert rows[0]["last_error"] == "the notification no longer exists"
    # Older than retry_for: never taken (then marked failed, and pruned with retention).
    old = [r for r in rows if r["id"] == 3]
    assert all((r["attempts"], r["status"]) in {(0, "pending"), (0, "failed")} for r in old)
    assert [b["data"]["id"] for b in receiver.bodies().values()] == [sent["id"]]


@pytest.mark.parametrize(
    "delivered_to", ["{NULL}", "{NULL,x}", "{{x},{y}}"], ids=["null", "null-and-key", "2-d"]
)
async def test_an_outbox_row_with_odd_endpoint_keys_is_sent_once_and_settled(
    receiver: WebhookReceiver,
    daemon_factory: DaemonFactory,
    db: asyncpg.Connection,
    delivered_to: str,
) -> None:
    # delivered_to is a text[] the schema leaves open: a NULL in it made sorting the keys
    # fail after the send (a TypeError), so the event was never settled and the endpoint
    # got it again at every lease, for ever; a 2-d array failed before the send.
    user = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    notification = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, status, finished_at)"
        " VALUES ($1, 'm', 'sent', now()) RETURNING id",
        user,
    )
    await db.execute(
        "INSERT INTO notifyd.webhook_events (type, notification_id, delivered_to)"
        " VALUES ('notification.sent', $1, $2::text::text[])",
        notification,
        delivered_to,
    )
    daemon = await daemon_factory(webhooks=webhooks(receiver.endpoint()))

    async def settled() -> bool:
        [row] = await outbox(db)
        return bool(row["status"] == "delivered")

    await wait_until(settled, what="the event to be delivered and settled")
    [row] = await outbox(db)
    assert row["attempts"] == 1
    assert list(receiver.delivered().values()) == [1]
    response = await daemon.client.get("/admin/webhooks")
    assert response.status == 200


async def test_neither_the_secret_nor_the_url_path_is_logged_or_stored(
    receiver: WebhookReceiver, daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    receiver.set_mode("unavailable")
    # A path and a query that hold a token, as some receivers' URLs do.
    endpoint = receiver.endpoint()
    endpoint["url"] = endpoint["url"].replace("/hooks/notifyd", "/tok-PATHSECRET?key=QSECRET")
    with capture_logs() as logs:
        daemon = await daemon_factory(webhooks=webhooks(endpoint))
        user = await daemon.create_user(phone="+79001234567")
        await daemon.notify(user_id=user, message="m", channels=["sms"])

        async def failed_once() -> bool:
            rows = await outbox(db)
            return bool(rows) and rows[0]["last_error"] is not None

        await wait_until(failed_once, what="a failed send")
    text = repr(logs) + repr([dict(r) for r in await outbox(db)])
    assert any(entry["event"] == "webhook_failed" for entry in logs)
    for secret in ("PATHSECRET", "QSECRET", receiver.secret, receiver.secret[6:]):
        assert secret not in text
