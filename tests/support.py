"""Test helpers: a daemon running in-process, and waiting on conditions with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from notifyd.config import Settings, deep_merge
from notifyd.web.app import create_app
from notifyd.web.keys import SERVICE
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi

T = TypeVar("T")

TERMINAL = {"sent", "failed", "cancelled"}


async def wait_until(
    check: Callable[[], Awaitable[T]],
    *,
    deadline: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns something truthy; fail after `deadline` seconds."""
    give_up = time.monotonic() + deadline
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(interval)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Prometheus text as {(sample name, sorted labels): value}."""
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


async def statements_and_rows(db: Any, table: str = "notifications") -> tuple[int, int]:
    """How many statements wrote rows to `notifyd.<table>`, and how many rows.

    Each of notifyd's statements commits on its own. A notification's `created_at` is its
    transaction's start time, the same for every row of one statement, and it survives the
    updates delivery makes; attempts are never updated, so their transaction ids (xmin)
    tell the statements apart.
    """
    statement = {"notifications": "created_at", "notification_attempts": "xmin::text"}[table]
    row = await db.fetchrow(
        f"SELECT count(DISTINCT {statement}) AS statements, count(*) AS rows FROM notifyd.{table}"
    )
    return row["statements"], row["rows"]


def make_settings(
    database_url: str,
    smtp: FakeSmtpServer | None = None,
    telegram: FakeTelegramApi | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for tests: fast retries, the fakes as vendors; sections as dict overrides."""
    data: dict[str, Any] = {
        "database": {"url": database_url, "pool_min_size": 1, "pool_max_size": 5},
        "dispatcher": {"poll_interval": 0.5, "listen_check_interval": 1.0},
        "delivery": {"backoff_initial": 0.01, "backoff_max": 0.05, "lease_seconds": 30},
        "shutdown": {"grace_seconds": 2},
        "channels": {
            "email": {"timeout": 2, "concurrency": 4},
            "sms": {"concurrency": 4},
            "telegram": {"timeout": 2, "concurrency": 4},
        },
    }
    if smtp is not None:
        data["channels"]["email"].update({"host": smtp.host, "port": smtp.port})
    if telegram is not None:
        data["channels"]["telegram"].update({"api_url": telegram.url, "bot_token": telegram.token})
    return Settings(**deep_merge(data, overrides))


@dataclass
class Daemon:
    """An in-process notifyd (API and delivery) with an HTTP client pointed at it."""

    client: TestClient[web.Request, web.Application]
    settings: Settings

    @property
    def app(self) -> web.Application:
        return self.client.app  # type: ignore[return-value]

    async def close(self) -> None:
        await self.client.close()

    async def app_ready(self, deadline: float = 10.0) -> None:
        """Wait until the instance is present and its first claim has come and gone."""
        service = self.app[SERVICE]
        await asyncio.wait_for(service.listener.present.wait(), deadline)

        async def ready() -> bool:
            response = await self.client.get("/readyz")
            return response.status == 200

        await wait_until(ready, deadline=deadline, what="/readyz after the first claim")

    async def metrics(self) -> Samples:
        """What /metrics says now."""
        response = await self.client.get("/metrics")
        assert response.status == 200, await response.text()
        return samples(await response.text())

    async def create_user(self, **contacts: Any) -> int:
        response = await self.client.post("/api/users/", json=contacts)
        assert response.status == 201, await response.text()
        user_id: int = (await response.json())["id"]
        return user_id

    async def notify(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/api/notify/", json=body)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def notification(self, notification_id: int) -> dict[str, Any]:
        response = await self.client.get(f"/api/notifications/{notification_id}")
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def wait_finished(self, notification_id: int, deadline: float = 10.0) -> dict[str, Any]:
        """Wait until the notification is sent or failed; return it with its attempts."""

        async def finished() -> dict[str, Any] | None:
            data = await self.notification(notification_id)
            return data if data["status"] in TERMINAL else None

        return await wait_until(
            finished, deadline=deadline, what=f"notification {notification_id} to finish"
        )


async def start_daemon(
    database_url: str,
    smtp: FakeSmtpServer | None,
    telegram: FakeTelegramApi | None,
    **overrides: Any,
) -> Daemon:
    settings = make_settings(database_url, smtp, telegram, **overrides)
    app = create_app(settings, database_url)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return Daemon(client=client, settings=settings)


async def drop_range_checks(db: asyncpg.Connection) -> None:
    """Take the range checks away: the state of a row written before they existed."""
    found = await db.fetch(
        "SELECT conrelid::regclass::text AS tab, conname FROM pg_constraint"
        " WHERE connamespace = 'notifyd'::regnamespace AND conname LIKE '%\\_in\\_range'"
    )
    for row in found:
        await db.execute(f"ALTER TABLE {row['tab']} DROP CONSTRAINT {row['conname']}")
    # The scheduling trigger checks send_at too; as it was before:
    await db.execute(
        "CREATE OR REPLACE FUNCTION notifyd.schedule_notification() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN"
        " NEW.run_after := greatest(NEW.run_after, NEW.send_at); RETURN NEW; END; $$"
    )
