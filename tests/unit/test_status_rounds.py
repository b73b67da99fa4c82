"""`notifyd status` tells the rounds of a retried notification apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifyd.cli.commands import render_status
from notifyd.domain import Attempt, Channel, Notification, Status

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def notification(round_: int) -> Notification:
    return Notification(
        id=7,
        user_id=1,
        subject="",
        message="hi",
        channels=(Channel.EMAIL,),
        status=Status.SENT,
        send_at=None,
        priority=0,
        created_at=NOW,
        updated_at=NOW,
        finished_at=NOW,
        round=round_,
    )


def attempt(n: int, round_: int, status: str) -> Attempt:
    return Attempt(
        id=n,
        notification_id=7,
        channel="email",
        attempt=1,
        status=status,
        error=None if status == "success" else "down",
        transient=None,
        provider_response=None,
        started_at=NOW + timedelta(seconds=n),
        finished_at=NOW + timedelta(seconds=n, milliseconds=5),
        round=round_,
    )


def test_a_retried_notification_shows_each_attempts_round() -> None:
    text = render_status(notification(2), [attempt(1, 1, "failed"), attempt(2, 2, "success")])
    lines = text.splitlines()
    assert any(line.split() == ["round", "2"] for line in lines)
    header = next(line for line in lines if "CHANNEL" in line)
    assert header.split()[0] == "ROUND"
    table = lines[lines.index(header) + 1 :]
    assert [line.split()[:3] for line in table] == [["1", "email", "1"], ["2", "email", "1"]]


def test_one_round_looks_as_before() -> None:
    text = render_status(notification(1), [attempt(1, 1, "success")])
    assert "ROUND" not in text
    assert "round" not in text
