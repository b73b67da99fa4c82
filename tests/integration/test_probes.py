"""Probes and metrics: /healthz, /readyz through a database outage, /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support import Daemon, samples, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def readyz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    response = await daemon.client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_healthz_answers_while_the_process_is_alive(daemon: Daemon) -> None:
    response = await daemon.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_ready_once_delivery_runs(daemon: Daemon) -> None:
    await daemon.app_ready()
    status, body = await readyz(daemon)
    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "listener": "ok", "delivery": "ok"},
    }


@pytest.fixture
async def outage(
    pg_server_url: str, database_url: str
) -> AsyncIterator[Callable[[bool], Awaitable[None]]]:
    """Cut the test's database off (existing sessions killed, new ones refused), or back."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_url)

    async def set_down(down: bool) -> None:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not down).lower()}')
        if down:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                name,
            )

    yield set_down
    await set_down(False)
    await admin.close()


async def test_readyz_says_why_during_a_database_outage_and_recovers(
    daemon_factory: DaemonFactory,
    outage: Callable[[bool], Awaitable[None]],
) -> None:
    daemon = await daemon_factory(dispatcher={"listen_check_interval": 0.2})
    await daemon.app_ready()
    await outage(True)

    async def unready() -> dict[str, Any] | None:
        status, body = await readyz(daemon)
        return body if status == 503 and body["checks"]["listener"] != "ok" else None

    body = await wait_until(unready, deadline=10, what="/readyz to report the outage")
    assert body["status"] == "unavailable"
    assert "database unavailable" in body["checks"]["database"]
    response = await daemon.client.post("/api/notify/", json={"user_id": 1, "message": "m"})
    assert response.status == 503
    assert response.content_type == "application/problem+json"

    await outage(False)

    async def ready() -> bool:
        status, _ = await readyz(daemon)
        return status == 200

    await wait_until(ready, deadline=20, what="/readyz to recover")


async def test_metrics_count_the_pipeline(daemon: Daemon) -> None:
    user_id = await daemon.create_user(phone="+79001234567")
    answer = await daemon.notify(user_id=user_id, message="m", channels=["sms"])
    await daemon.wait_finished(answer["id"])
    await daemon.notify(user_id=user_id, message="m", channels=["email"])  # no email: fails

    async def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        response = await daemon.client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        found = samples(await response.text())
        failed = found.get(("notifyd_notifications_finished_total", (("status", "failed"),)))
        return found if failed == 1 else None

    found = await wait_until(scraped, deadline=10, what="the failed notification in /metrics")
    assert found[("notifyd_notifications_enqueued_total", ())] == 2
    assert found[("notifyd_notifications_finished_total", (("status", "sent"),))] == 1
    assert found[("notifyd_attempts_total", (("channel", "sms"), ("status", "success")))] == 1
    assert found[("notifyd_attempts_total", (("channel", "email"), ("status", "failed")))] == 1
    assert found[("notifyd_attempt_duration_seconds_count", (("channel", "sms"),))] == 1
    assert found[("notifyd_delivery_latency_seconds_count", ())] == 2
    assert found[("notifyd_pending_notifications", ())] == 0
    assert found[("notifyd_inbox_depth", (("channel", "sms"),))] == 0
    assert found[("notifyd_busy_actors", (("channel", "email"),))] == 0
    assert found[("notifyd_in_flight", ())] == 0
    assert found[("notifyd_listener_connected", ())] == 1
    assert found[("notifyd_listener_reconnects_total", ())] == 0
    assert found[("notifyd_enqueue_waiting", ())] == 0
    assert found[("notifyd_pruned_total", (("table", "notifications"),))] == 0
    assert ("notifyd_build_info", (("version", "0.1.0"),)) in found
