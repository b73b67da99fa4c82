"""Delivery at the vendor's pace: the daemon against a fake Bot API that enforces its limits.

Real PostgreSQL, the daemon's own service in-process, and `FakeTelegramApi` with flood
control as Telegram applies it (`FloodControl`). Rates are checked on the timestamps the
fake took when it accepted each message, never on how long the test took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

import asyncpg
import pytest

from notifyd.delivery import actors
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi, FloodControl
from tests.fakes.twilio import FakeTwilioApi
from tests.support import Daemon, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]


async def _users(db: asyncpg.Connection, chats: Sequence[int], *, email: bool = False) -> list[int]:
    rows = await db.fetch(
        """
        INSERT INTO notifyd.users (email, telegram_chat_id)
        SELECT CASE WHEN $2 THEN 'user' || c || '@example.com' END, c::text
        FROM unnest($1::bigint[]) AS c
        RETURNING id
        """,
        list(chats),
        email,
    )
    return [row["id"] for row in rows]


async def _enqueue(
    db: asyncpg.Connection, user_ids: Sequence[int], channels: list[str]
) -> list[int]:
    rows = await db.fetch(
        """
        SELECT notifyd.enqueue(t.user_id, 'message #' || t.n, 'pacing test', $2::text[]) AS id
        FROM unnest($1::bigint[]) WITH ORDINALITY AS t (user_id, n)
        ORDER BY t.n
        """,
        list(user_ids),
        channels,
    )
    return [row["id"] for row in rows]


async def _wait_terminal(db: asyncpg.Connection, ids: list[int], deadline: float) -> dict[str, int]:
    async def done() -> dict[str, int] | None:
        rows = await db.fetch(
            "SELECT status, count(*) AS n FROM notifyd.notifications"
            " WHERE id = ANY($1::bigint[]) GROUP BY status",
            ids,
        )
        counts = {row["status"]: row["n"] for row in rows}
        return counts if set(counts) <= {"sent", "failed"} else None

    return await wait_until(done, deadline=deadline, interval=0.1, what="every notification")


async def _attempts(db: asyncpg.Connection, notification_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT channel, attempt, status, error, transient FROM notifyd.notification_attempts"
        " WHERE notification_id = $1 ORDER BY id",
        notification_id,
    )


def _most_in_any_window(times: list[float], window: float) -> int:
    """The most timestamps that fall within any `window` seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_burst_to_300_chats_is_all_sent_at_the_bot_s_pace(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, telegram_api: FakeTelegramApi
) -> None:
    chats = list(range(10_001, 10_301))
    telegram_api.chats.update(chats)
    telegram_api.limits = FloodControl()
    await daemon_factory(channels={"telegram": {"concurrency": 10}})
    users = await _users(db, chats)

    ids = await _enqueue(db, users, ["telegram"])
    counts = await _wait_terminal(db, ids, deadline=90)

    assert counts == {"sent": 300}
    assert len(telegram_api.sent) == 300
    assert len(telegram_api.refused) <= 5, telegram_api.refused
    # At most 30 in any second, as the fake (with its jitter allowance) counts them.
    assert _most_in_any_window(telegram_api.sent_at, 1.0 - FloodControl.tolerance) <= 30


async def test_eight_messages_to_one_chat_are_all_sent_a_second_apart(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, telegram_api: FakeTelegramApi
) -> None:
    telegram_api.limits = FloodControl()
    await daemon_factory()
    [user] = await _users(db, [1001])

    ids = await _enqueue(db, [user] * 8, ["telegram"])
    counts = await _wait_terminal(db, ids, deadline=30)

    assert counts == {"sent": 8}
    assert len(telegram_api.refused) <= 2, telegram_api.refused
    gaps = [b - a for a, b in zip(telegram_api.sent_at, telegram_api.sent_at[1:], strict=False)]
    assert min(gaps) >= 1.0 - FloodControl.tolerance
    for notification_id in ids:  # no attempt used up by a refusal
        statuses = [row["status"] for row in await _attempts(db, notification_id)]
        assert statuses.count("failed") == 0


async def test_two_instances_share_one_limit(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, telegram_api: FakeTelegramApi
) -> None:
    rate = 20
    chats = list(range(20_001, 20_121))
    telegram_api.chats.update(chats)
    settings: dict[str, Any] = {
        "channels": {"telegram": {"rate_limit": rate, "concurrency": 5}},
        # Small claims, so that both instances take a share of the backlog.
        "dispatcher": {"batch_size": 10, "max_in_flight": 20, "poll_interval": 0.2},
    }
    first = await daemon_factory(**settings)
    second = await daemon_factory(**settings)
    users = await _users(db, chats)

    ids = await _enqueue(db, users, ["telegram"])
    counts = await _wait_terminal(db, ids, deadline=60)

    assert counts == {"sent": len(chats)}
    sent_by = []
    for instance in (first, second):
        metrics = await instance.metrics()
        sent_by.append(
            metrics[("notifyd_attempts_total", (("channel", "telegram"), ("status", "success")))]
        )
    assert all(sent > 0 for sent in sent_by), sent_by  # both delivered some
    assert sum(sent_by) == len(chats)
    # Together within the limit: twice it would be 40 in a second. A few of jitter at
    # the edges of a second (this host's scheduling, and the fake's own), none over
    # longer windows, where jitter averages out.
    assert _most_in_any_window(telegram_api.sent_at, 1.0) <= rate + 3
    assert _most_in_any_window(telegram_api.sent_at, 3.0) <= 3 * rate + 3
    times = telegram_api.sent_at
    assert (len(times) - 1) / (times[-1] - times[0]) <= rate * 1.02


async def test_a_long_pause_fails_nothing_and_sends_once_it_is_over(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, telegram_api: FakeTelegramApi
) -> None:
    daemon = await daemon_factory()
    [user] = await _users(db, [1001])
    telegram_api.rate_limit_next(retry_after=30, header=False)

    [notification_id] = await _enqueue(db, [user], ["telegram"])

    async def waiting() -> asyncpg.Record | None:
        row = await db.fetchrow(
            "SELECT status, run_after - now() AS wait FROM notifyd.notifications WHERE id = $1",
            notification_id,
        )
        ready = row["status"] == "pending" and row["wait"].total_seconds() > 20
        return row if ready else None

    # Paused: back in the queue until the pause is over, one throttled attempt, no failure.
    await wait_until(waiting, deadline=10, what="the notification to wait out the pause")
    pause = await db.fetchval(
        "SELECT extract(epoch FROM tat - now()) FROM notifyd.pacing WHERE key = 'telegram'"
    )
    assert 20 < pause <= 30
    metrics = await daemon.metrics()
    assert metrics[("notifyd_channel_paused", (("channel", "telegram"),))] == 1
    assert 20 < metrics[("notifyd_channel_next_slot_seconds", (("channel", "telegram"),))] <= 30
    assert metrics[("notifyd_channel_next_slot_seconds", (("channel", "email"),))] == 0
    assert [(r["status"], r["transient"]) for r in await _attempts(db, notification_id)] == [
        ("throttled", True)
    ]

    # Thirty seconds pass (as far as the queue and the pacing are concerned).
    await db.execute("UPDATE notifyd.pacing SET tat = now() WHERE key = 'telegram'")
    await db.execute(
        "UPDATE notifyd.notifications SET run_after = now() WHERE id = $1", notification_id
    )
    counts = await _wait_terminal(db, [notification_id], deadline=10)

    assert counts == {"sent": 1}
    assert [(r["attempt"], r["status"]) for r in await _attempts(db, notification_id)] == [
        (1, "throttled"),
        (1, "success"),
    ]


async def test_a_pause_past_max_throttle_wait_falls_back_saying_why(
    daemon_factory: DaemonFactory,
    db: asyncpg.Connection,
    telegram_api: FakeTelegramApi,
    smtp_server: FakeSmtpServer,
) -> None:
    await daemon_factory(delivery={"max_throttle_wait": 5})
    [user] = await _users(db, [1001], email=True)
    telegram_api.rate_limit_next(retry_after=30, header=False)

    [notification_id] = await _enqueue(db, [user], ["telegram", "email"])
    counts = await _wait_terminal(db, [notification_id], deadline=10)

    assert counts == {"sent": 1}
    rows = await _attempts(db, notification_id)
    assert [(r["channel"], r["status"]) for r in rows] == [
        ("telegram", "throttled"),
        ("email", "success"),
    ]
    assert rows[0]["error"] == (
        "Telegram: Too Many Requests: retry after 30 (asked to wait 30 s, which would pass"
        " delivery.max_throttle_wait of 5 s: trying the next channel)"
    )
    assert len(smtp_server.received) == 1


async def test_an_smtp_server_that_limits_its_clients_is_waited_for_not_failed(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, smtp_server: FakeSmtpServer
) -> None:
    # notifyd is not told the server's limit: its 451 4.7.1 answers pause the channel.
    smtp_server.rate_limit = 5
    await daemon_factory(delivery={"max_attempts": 1})
    users = await _users(db, list(range(30_001, 30_021)), email=True)

    ids = await _enqueue(db, users, ["email"])
    counts = await _wait_terminal(db, ids, deadline=60)

    assert counts == {"sent": 20}
    assert smtp_server.refused > 0
    statuses = await db.fetch(
        "SELECT status, count(*) AS n FROM notifyd.notification_attempts GROUP BY status"
    )
    by_status = {row["status"]: row["n"] for row in statuses}
    assert by_status.get("failed", 0) == 0  # one attempt allowed, and none used up
    assert by_status["throttled"] == smtp_server.refused
    assert by_status["success"] == 20
    # Every actor waited out each pause (1 s: SMTP gives no time), not only the one told:
    # a pause lets through only the attempts already at the server (4 connections), so
    # fewer refusals than deliveries (each asking on its own would be several times that).
    assert smtp_server.refused < 20, smtp_server.refused


async def test_a_greylisted_address_waits_its_pause_on_a_paced_channel(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, smtp_server: FakeSmtpServer
) -> None:
    # The channel is paced (rate_limit) but has no per-recipient interval: the pause of
    # one address is waited out by its delivery, not asked again at the channel's rate.
    smtp_server.mode, smtp_server.fail_at = "tempfail", "rcpt"
    smtp_server.tempfail_reply = "450 4.7.1 Greylisted, come back later"
    await daemon_factory(channels={"email": {"rate_limit": 50}})
    [user] = await _users(db, [40_001], email=True)

    [notification_id] = await _enqueue(db, [user], ["email"])

    async def twice() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT status, started_at, finished_at FROM notifyd.notification_attempts"
            " WHERE notification_id = $1 ORDER BY id",
            notification_id,
        )
        return rows if len(rows) >= 2 else None

    first, second = (await wait_until(twice, deadline=10, what="two attempts"))[:2]
    smtp_server.mode = "accept"
    counts = await _wait_terminal(db, [notification_id], deadline=10)

    assert (first["status"], second["status"]) == ("throttled", "throttled")
    assert (second["started_at"] - first["finished_at"]).total_seconds() >= 0.9
    assert counts == {"sent": 1}


async def test_a_pause_past_max_throttle_wait_falls_back_the_others_waiting_too(
    daemon_factory: DaemonFactory,
    db: asyncpg.Connection,
    telegram_api: FakeTelegramApi,
    smtp_server: FakeSmtpServer,
) -> None:
    # A bot told to wait a day (taken as an hour): a notification that comes after it
    # falls back as the one told did, rather than wait the hour in the queue.
    await daemon_factory(delivery={"max_throttle_wait": 5})
    first_user, later_user = await _users(db, [1001, 1002], email=True)
    telegram_api.rate_limit_next(retry_after=86_400, header=False)
    [first] = await _enqueue(db, [first_user], ["telegram", "email"])
    assert await _wait_terminal(db, [first], deadline=10) == {"sent": 1}

    [later] = await _enqueue(db, [later_user], ["telegram", "email"])
    counts = await _wait_terminal(db, [later], deadline=10)

    assert counts == {"sent": 1}
    assert len(telegram_api.calls) == 1  # the vendor was not asked again
    rows = await _attempts(db, later)
    assert [(r["channel"], r["status"]) for r in rows] == [
        ("telegram", "throttled"),
        ("email", "success"),
    ]
    assert rows[0]["error"].startswith("not tried: the vendor asked this channel to pause")
    assert "delivery.max_throttle_wait of 5 s" in rows[0]["error"]
    assert len(smtp_server.received) == 2


async def test_sms_through_twilio_goes_at_the_configured_pace(
    daemon_factory: DaemonFactory, db: asyncpg.Connection, twilio_api: FakeTwilioApi
) -> None:
    # The account takes 5 a second (beyond: 429, error 20429); notifyd is told 4.
    twilio_api.rate_limit = 5
    await daemon_factory(channels={"sms": twilio_api.settings(rate_limit=4, concurrency=4)})
    rows = await db.fetch(
        "INSERT INTO notifyd.users (phone) SELECT '+1415555' || lpad(n::text, 4, '0')"
        " FROM generate_series(1, 12) AS n RETURNING id"
    )

    ids = await _enqueue(db, [row["id"] for row in rows], ["sms"])
    counts = await _wait_terminal(db, ids, deadline=30)

    assert counts == {"sent": 12}
    assert len(twilio_api.messages) == 12
    assert twilio_api.refused == 0


class _ClockBehind(datetime):
    """This host's clock, a minute behind the database's."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _ClockBehind:
        return cls.fromtimestamp((datetime.now(tz) - timedelta(minutes=1)).timestamp(), tz)


async def test_a_far_slot_is_waited_for_by_the_database_s_clock(
    daemon_factory: DaemonFactory,
    db: asyncpg.Connection,
    telegram_api: FakeTelegramApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The channel's next slot is 30 s away (another instance was told to pause). Counted
    # on a clock a minute behind, "30 s from now" would be already past for the queue:
    # the notification would be claimed and sent back again and again until its slot.
    monkeypatch.setattr(actors, "datetime", _ClockBehind)
    await daemon_factory()
    [user] = await _users(db, [1001])
    await db.execute("SELECT notifyd.pause_slot('telegram', 30)")

    [notification_id] = await _enqueue(db, [user], ["telegram"])

    async def deferred() -> asyncpg.Record | None:
        row = await db.fetchrow(
            "SELECT status, claims, extract(epoch FROM run_after - now()) AS wait"
            " FROM notifyd.notifications WHERE id = $1",
            notification_id,
        )
        return row if row["status"] == "pending" and row["claims"] >= 1 else None

    row = await wait_until(deferred, deadline=10, what="the notification to be sent back")
    assert 20 < row["wait"] <= 30
    assert row["claims"] == 1
    assert telegram_api.calls == []
