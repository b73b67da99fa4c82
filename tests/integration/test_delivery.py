"""Delivery end to end, in-process: API -> table -> dispatcher -> actors -> providers.

Real PostgreSQL, a real SMTP server (aiosmtpd) and a fake Telegram Bot API server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from notifyd.domain import OutgoingMessage
from notifyd.providers.base import Provider
from notifyd.web.keys import SERVICE
from tests.fakes.smtp import FakeSmtpServer, unused_port
from tests.fakes.telegram import FakeTelegramApi
from tests.support import Daemon, statements_and_rows, wait_until

DaemonFactory = Callable[..., Awaitable[Daemon]]
EMAIL_DOWN = {"channels": {"email": {"port": unused_port()}}}


def trail(notification: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(a["channel"], a["attempt"], a["status"]) for a in notification["attempts"]]


async def full_user(daemon: Daemon, **overrides: Any) -> int:
    contacts = {"email": "ivan@example.com", "phone": "+79001234567", "telegram_chat_id": 1001}
    contacts.update(overrides)
    return await daemon.create_user(**{k: v for k, v in contacts.items() if v is not None})


async def test_curl_example_is_delivered_by_email(
    daemon: Daemon, smtp_server: FakeSmtpServer
) -> None:
    user_id = await full_user(daemon)
    answer = await daemon.notify(
        user_id=user_id,
        subject="Привет!",
        message="Тестовое уведомление",
        channels=["email", "sms", "telegram"],
    )
    assert answer["status"] == "pending"
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "sent"
    assert trail(finished) == [("email", 1, "success")]
    assert finished["attempts"][0]["provider_response"]["smtp_code"] == 250
    (mail,) = await smtp_server.wait_for_messages(1)
    assert mail["Subject"] == "Привет!"
    assert mail["To"] == "ivan@example.com"
    assert mail.get_content().strip() == "Тестовое уведомление"


async def test_email_down_three_attempts_then_sms(daemon_factory: DaemonFactory) -> None:
    daemon = await daemon_factory(**EMAIL_DOWN)
    answer = await daemon.notify(user_id=await full_user(daemon), message="hello")
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "sent"
    assert trail(finished) == [
        ("email", 1, "failed"),
        ("email", 2, "failed"),
        ("email", 3, "failed"),
        ("sms", 1, "success"),
    ]
    assert all(a["error"] for a in finished["attempts"][:3])


async def test_email_down_and_sms_failing_telegram_delivers(
    daemon_factory: DaemonFactory, telegram_api: FakeTelegramApi
) -> None:
    daemon = await daemon_factory(
        channels={"email": {"port": unused_port()}, "sms": {"fail_always": True}}
    )
    answer = await daemon.notify(
        user_id=await full_user(daemon), subject="Тема", message="Сообщение"
    )
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "sent"
    assert trail(finished) == [
        ("email", 1, "failed"),
        ("email", 2, "failed"),
        ("email", 3, "failed"),
        ("sms", 1, "failed"),
        ("sms", 2, "failed"),
        ("sms", 3, "failed"),
        ("telegram", 1, "success"),
    ]
    (call,) = await telegram_api.wait_for_messages(1)
    assert call.text == "Тема\n\nСообщение"


async def test_everything_failing_ends_failed_with_every_attempt_in_order(
    daemon_factory: DaemonFactory, telegram_api: FakeTelegramApi
) -> None:
    daemon = await daemon_factory(
        channels={"email": {"port": unused_port()}, "sms": {"fail_always": True}}
    )
    telegram_api.fail_next(times=3, status=502)
    answer = await daemon.notify(user_id=await full_user(daemon), message="hello")
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "failed"
    assert trail(finished) == [
        (channel, attempt, "failed")
        for channel in ("email", "sms", "telegram")
        for attempt in (1, 2, 3)
    ]
    started = [a["started_at"] for a in finished["attempts"]]
    assert started == sorted(started)
    assert finished["finished_at"] is not None


async def test_smtp_permanent_error_gives_one_attempt_then_falls_back(
    daemon: Daemon, smtp_server: FakeSmtpServer
) -> None:
    smtp_server.mode = "reject"
    answer = await daemon.notify(user_id=await full_user(daemon), message="hello")
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [("email", 1, "failed"), ("sms", 1, "success")]
    assert finished["attempts"][0]["provider_response"]["smtp_code"] == 550


async def test_smtp_temporary_error_is_retried_on_email(
    daemon: Daemon, smtp_server: FakeSmtpServer
) -> None:
    smtp_server.mode = "tempfail"
    answer = await daemon.notify(
        user_id=await full_user(daemon), message="hello", channels=["email"]
    )
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [("email", n, "failed") for n in (1, 2, 3)]
    assert {a["provider_response"]["smtp_code"] for a in finished["attempts"]} == {451}


async def test_telegram_permanent_errors_fall_back_after_one_attempt(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    cases = {
        "chat not found": {"telegram_chat_id": 999},
        "blocked": {"telegram_chat_id": 4003},
    }
    finished = {}
    for name, contacts in cases.items():
        answer = await daemon.notify(
            user_id=await full_user(daemon, **contacts),
            message="hello",
            channels=["telegram", "sms"],
        )
        finished[name] = await daemon.wait_finished(answer["id"])
    for name, notification in finished.items():
        assert trail(notification) == [("telegram", 1, "failed"), ("sms", 1, "success")], name
    assert "chat not found" in finished["chat not found"]["attempts"][0]["error"]
    assert "blocked" in finished["blocked"]["attempts"][0]["error"]


async def test_telegram_wrong_token_is_permanent(
    daemon_factory: DaemonFactory, telegram_api: FakeTelegramApi
) -> None:
    daemon = await daemon_factory(channels={"telegram": {"bot_token": "42:wrong-token-value"}})
    answer = await daemon.notify(
        user_id=await full_user(daemon), message="hello", channels=["telegram", "sms"]
    )
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [("telegram", 1, "failed"), ("sms", 1, "success")]
    assert finished["attempts"][0]["provider_response"]["error_code"] == 401
    assert "wrong-token-value" not in str(finished)


async def test_telegram_rate_limit_and_server_errors_are_retried(
    daemon: Daemon, telegram_api: FakeTelegramApi
) -> None:
    telegram_api.rate_limit_next(times=1, retry_after=1)
    telegram_api.fail_next(times=1, status=500)
    answer = await daemon.notify(
        user_id=await full_user(daemon), message="hello", channels=["telegram"]
    )
    finished = await daemon.wait_finished(answer["id"])
    # The 429 is a pause, not an attempt used up: the 500 is still the first attempt.
    assert trail(finished) == [
        ("telegram", 1, "throttled"),
        ("telegram", 1, "failed"),
        ("telegram", 2, "success"),
    ]
    first, second, _ = finished["attempts"]
    assert first["provider_response"]["parameters"]["retry_after"] == 1
    # retry_after is honoured: the second attempt starts at least a second after the first.
    assert second["started_at"] > first["finished_at"]
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(
        first["finished_at"]
    )
    assert gap.total_seconds() >= 1.0


async def test_missing_contacts_fail_permanently_and_fall_back(daemon: Daemon) -> None:
    user_id = await daemon.create_user(telegram_chat_id=1002)
    answer = await daemon.notify(user_id=user_id, message="hello")
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "sent"
    assert trail(finished) == [
        ("email", 1, "failed"),
        ("sms", 1, "failed"),
        ("telegram", 1, "success"),
    ]
    assert "no email" in finished["attempts"][0]["error"]
    assert "no phone" in finished["attempts"][1]["error"]


async def test_user_without_any_contact_ends_failed(daemon: Daemon) -> None:
    user_id = await daemon.create_user()
    answer = await daemon.notify(user_id=user_id, message="hello")
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "failed"
    assert trail(finished) == [
        ("email", 1, "failed"),
        ("sms", 1, "failed"),
        ("telegram", 1, "failed"),
    ]


async def test_unconfigured_telegram_is_a_permanent_failure(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(channels={"telegram": {"bot_token": ""}})
    answer = await daemon.notify(
        user_id=await full_user(daemon), message="hello", channels=["telegram", "sms"]
    )
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [("telegram", 1, "failed"), ("sms", 1, "success")]
    assert "not configured" in finished["attempts"][0]["error"]


async def test_channel_order_is_respected(daemon: Daemon, telegram_api: FakeTelegramApi) -> None:
    answer = await daemon.notify(
        user_id=await full_user(daemon), message="hello", channels=["telegram", "email"]
    )
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [("telegram", 1, "success")]
    assert len(telegram_api.sent) == 1


async def test_backoff_waits_do_not_occupy_actors(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    # One email actor, a 30 s backoff: if a backoff held the actor, the 40 first attempts
    # would need 40 x 30 s. Released, they all happen at once.
    daemon = await daemon_factory(
        channels={"email": {"port": unused_port(), "concurrency": 1}},
        delivery={"backoff_initial": 30, "backoff_max": 30},
    )
    user_id = await full_user(daemon)
    for _ in range(40):
        await daemon.notify(user_id=user_id, message="hello", channels=["email"])

    async def first_attempts_done() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM notifyd.notification_attempts WHERE attempt = 1"
        )
        return bool(count == 40)

    await wait_until(first_attempts_done, deadline=15, what="40 first attempts")
    assert daemon.app[SERVICE].actors["email"].busy == 0


class HangingSms(Provider):
    """An SMS vendor that never answers, and a provider that sets no timeout of its own."""

    channel = "sms"

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


async def test_a_provider_that_hangs_is_cut_at_the_channel_timeout(
    daemon_factory: DaemonFactory, smtp_server: FakeSmtpServer
) -> None:
    daemon = await daemon_factory(channels={"sms": {"timeout": 0.2}})
    daemon.app[SERVICE].actors["sms"].provider = HangingSms()
    user_id = await full_user(daemon)
    answer = await daemon.notify(user_id=user_id, message="m", channels=["sms", "email"])
    finished = await daemon.wait_finished(answer["id"])
    assert trail(finished) == [
        ("sms", 1, "failed"),
        ("sms", 2, "failed"),
        ("sms", 3, "failed"),
        ("email", 1, "success"),
    ]
    sms_attempts = finished["attempts"][:3]
    assert {a["error"] for a in sms_attempts} == {"timed out after 0.2s"}
    for a in sms_attempts:
        assert a["duration_ms"] >= 200


async def test_a_claimed_batch_is_written_by_one_statement(
    daemon_factory: Callable[..., Awaitable[Daemon]], db: asyncpg.Connection
) -> None:
    # Attempts of a fast vendor end a few loop turns apart, as its slots pass from actor
    # to actor: the recorder waits for them, so the batch costs one round trip, not one
    # per handful of attempts (which is what kept the last of a batch waiting).
    daemon = await daemon_factory(
        channels={"sms": {"concurrency": 5}}, dispatcher={"batch_size": 50}
    )
    await daemon.app_ready()
    user_id = await daemon.create_user(phone="+79001234567")
    await db.execute(
        "INSERT INTO notifyd.notifications (user_id, message, channels)"
        " SELECT $1, 'm' || n, ARRAY['sms'] FROM generate_series(1, 50) AS n",
        user_id,
    )

    async def all_written() -> bool:
        return (await statements_and_rows(db, "notification_attempts"))[1] == 50

    await wait_until(all_written, deadline=10, what="50 attempts written")
    assert await statements_and_rows(db, "notification_attempts") == (1, 50)
