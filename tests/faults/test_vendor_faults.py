"""Vendors failing under a running daemon: the SMTP server down, Telegram rate limits."""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import quote

import asyncpg
import pytest

from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.vendor import ForcedAnswer
from tests.faults.harness import (
    Launcher,
    ObservedSmtpServer,
    check_sent_have_one_success,
    create_users,
    duplicates,
    enqueue,
    mails_per_notification,
    statuses,
    wait_all_terminal,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.acceptance, pytest.mark.timeout(180)]


async def test_smtp_down_then_up_every_email_is_delivered_after_retries(
    launcher: Launcher, db: asyncpg.Connection, smtp: ObservedSmtpServer
) -> None:
    notifications = 40
    smtp.mode = "slow"
    smtp.delay = 0.3
    await launcher.start(
        {
            "channels.email.concurrency": 5,
            "delivery.max_attempts": 30,  # enough to outlast the outage: none may fail
            "delivery.backoff_initial": 0.2,
            "delivery.backoff_max": 1.0,
        }
    )
    users = await create_users(db, notifications)
    ids = await enqueue(db, users, ["email"], "smtp-outage")

    async def under_way() -> bool:
        return len(smtp.received) >= 10 and smtp.in_data >= 3

    await wait_until(under_way, deadline=60, interval=0.005, what="deliveries under way")
    in_data_at_stop = smtp.in_data
    received_at_stop = len(smtp.received)
    await smtp.stop()  # drops the sessions under way; new connections are refused

    async def all_retrying() -> bool:
        # Every notification not yet sent has failed at least twice against the dead server.
        rows = await db.fetch(
            """
            SELECT count(*) FILTER (WHERE a.status = 'failed') AS failures
            FROM notifyd.notifications AS n
            LEFT JOIN notifyd.notification_attempts AS a ON a.notification_id = n.id
            WHERE n.id = ANY($1::bigint[]) AND n.status <> 'sent'
            GROUP BY n.id
            """,
            ids,
        )
        return all(row["failures"] >= 2 for row in rows)

    await wait_until(all_retrying, deadline=60, interval=0.1, what="every e-mail to be retrying")
    restarted = time.monotonic()
    await smtp.start()  # the same port again
    await wait_all_terminal(db, ids, deadline=60, what="every e-mail after the SMTP restart")
    recovery = time.monotonic() - restarted

    final = await statuses(db, ids)
    log = await check_sent_have_one_success(db, ids)
    failed_rows = [row for row in log.rows if row["status"] == "failed"]
    mails = mails_per_notification(smtp)
    most_attempts = max(log.failures.values(), default=0) + 1
    print(
        f"FAULT smtp_outage: sent={final['sent']} failed={final['failed']}"
        f" duplicates={duplicates(mails)} received_before_stop={received_at_stop}"
        f" in_data_at_stop={in_data_at_stop} failed_attempts={len(failed_rows)}"
        f" retried_notifications={len(log.failures)} most_attempts_one={most_attempts}"
        f" recovery_s={recovery:.1f}"
    )
    assert final == {"sent": notifications}
    assert failed_rows, "the outage must have cost attempts"
    assert all(row["transient"] is True for row in failed_rows)
    assert all(row["error"].startswith("SMTP ") for row in failed_rows)
    assert set(mails) == set(ids)
    assert duplicates(mails) <= in_data_at_stop


async def test_telegram_rate_limits_and_server_errors_are_waited_out_without_leaking_the_token(
    launcher: Launcher, db: asyncpg.Connection, telegram_api: FakeTelegramApi
) -> None:
    notifications = 20
    token = telegram_api.token
    # The Bot API storm, answered in this order to whatever requests come first.
    telegram_api.rate_limit_next(times=4, retry_after=1)
    telegram_api.force(
        ForcedAnswer(429, "<html>Too Many Requests</html>", {"Retry-After": "2"}), times=2
    )
    for status in (500, 502, 503, 504):
        telegram_api.fail_next(times=3, status=status)
    # A proxy's error page that quotes the request URL, bot token included.
    telegram_api.force(
        ForcedAnswer(502, f"<html>502 Bad Gateway for /bot{token}/sendMessage</html>"), times=2
    )
    forced = 4 + 2 + 12 + 2
    instance = await launcher.start(
        {
            "channels.telegram.concurrency": 5,
            "channels.telegram.timeout": 5,
            "delivery.max_attempts": 40,  # more than the storm: none may fail
            "delivery.backoff_initial": 0.05,
            "delivery.backoff_max": 0.2,
        }
    )
    users = await create_users(db, notifications, email=False, phone=False, telegram_chat_id=1001)
    started = time.monotonic()
    ids = await enqueue(db, users, ["telegram"], "telegram-storm")
    await wait_all_terminal(db, ids, deadline=90, what="every Telegram message")
    elapsed = time.monotonic() - started

    final = await statuses(db, ids)
    log = await check_sent_have_one_success(db, ids)
    failed_rows = [row for row in log.rows if row["status"] == "failed"]
    throttled_rows = [row for row in log.rows if row["status"] == "throttled"]
    # After a 429, the next attempt of that notification waits at least what was asked.
    waits: list[tuple[float, float]] = []  # (told, waited)
    previous = None
    for row in log.rows:
        if previous is not None and previous["notification_id"] == row["notification_id"]:
            told = _retry_after(previous)
            if told is not None:
                waited = (row["started_at"] - previous["finished_at"]).total_seconds()
                waits.append((told, waited))
        previous = row
    kinds = Counter(_kind(row) for row in failed_rows)
    await instance.process.stop()
    texts = Counter(call.text for call in telegram_api.sent)
    leaks = _token_leaks(
        token,
        [str(row["error"]) for row in log.rows]
        + [str(row["provider_response"]) for row in log.rows]
        + instance.process.lines
        + [instance.process.stderr.decode("utf-8", errors="replace")],
    )
    shortest = min((waited - told for told, waited in waits), default=float("nan"))
    print(
        f"FAULT telegram_storm: sent={final['sent']} failed={final['failed']}"
        f" failed_attempts={len(failed_rows)} kinds={dict(kinds)} waits_after_429={len(waits)}"
        f" min_extra_wait_s={shortest:.2f} token_leaks={len(leaks)} elapsed_s={elapsed:.1f}"
    )
    assert final == {"sent": notifications}
    # A 429 is a pause, written as a throttled attempt; the rest each cost one attempt.
    assert len(throttled_rows) == 6
    assert len(failed_rows) == forced - 6, "each scripted failure cost exactly one attempt"
    assert all(row["transient"] is True for row in failed_rows + throttled_rows)
    assert len(waits) == 6
    assert all(waited >= told - 0.05 for told, waited in waits), waits
    assert len(telegram_api.sent) == notifications
    assert set(texts.values()) == {1}, "each message sent exactly once"
    assert len(telegram_api.calls) == notifications + forced
    assert leaks == [], leaks[:3]


def _retry_after(row: asyncpg.Record) -> float | None:
    """What a throttled attempt was told to wait, if it was a 429."""
    if row["status"] != "throttled" or row["provider_response"] is None:
        return None
    response = json.loads(row["provider_response"])
    if response.get("error_code") == 429:
        return float(response["parameters"]["retry_after"])
    if response.get("http_status") == 429:
        return 2.0  # the Retry-After header of the HTML answer
    return None


def _kind(row: asyncpg.Record) -> str:
    response = json.loads(row["provider_response"] or "{}")
    return str(response.get("error_code") or response.get("http_status") or "none")


def _token_leaks(token: str, texts: list[str]) -> list[str]:
    secret = token.split(":", 1)[1]
    forms = {token, quote(token, safe=""), secret}
    return [text for text in texts if any(form in text for form in forms)]
