"""The login cookie, the cross-site check and the value formatting: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import make_mocked_request

from notifyd.domain import Attempt, Notification
from notifyd.web.admin.formatting import percent, seconds, timeline, when
from notifyd.web.admin.login import safe_next
from notifyd.web.admin.session import Sessions, same_origin, session_key
from notifyd.web.auth import caller_id

TOKEN = "t0ken-for-the-ops-team-0123456789"
OTHER = "t0ken-for-the-crm-9876543210"
NOW = 1_800_000_000.0


def test_a_cookie_names_the_caller_and_no_token() -> None:
    sessions = Sessions([TOKEN, OTHER])
    caller = sessions.caller(TOKEN)
    assert caller == caller_id(TOKEN.encode())
    value = sessions.issue(caller, NOW)
    assert TOKEN not in value
    assert sessions.verify(value, NOW) == caller
    assert sessions.verify(value, NOW + sessions.lifetime - 1) == caller
    assert sessions.verify(value, NOW + sessions.lifetime) is None


def test_a_cookie_from_another_token_set_is_void() -> None:
    value = Sessions([TOKEN, OTHER]).issue(caller_id(TOKEN.encode()), NOW)
    assert Sessions([OTHER, TOKEN]).verify(value, NOW) is not None  # order does not matter
    assert Sessions([TOKEN]).verify(value, NOW) is None
    assert Sessions([TOKEN, OTHER, "t0ken-added-later-000000"]).verify(value, NOW) is None


def test_a_cookie_issued_for_longer_than_the_lifetime_is_void() -> None:
    long = Sessions([TOKEN], lifetime=30 * 24 * 3600)
    value = long.issue(caller_id(TOKEN.encode()), NOW)
    assert Sessions([TOKEN]).verify(value, NOW) is None


def test_the_key_depends_on_every_token_and_not_on_how_they_split() -> None:
    assert session_key(["ab", "c"]) != session_key(["a", "bc"])
    assert session_key(["a", "b"]) == session_key(["b", "a"])
    assert session_key([TOKEN]) != session_key([OTHER])


@pytest.mark.parametrize("token", ["", " ", "x", TOKEN + " x", f"Bearer {TOKEN}"])
def test_only_a_configured_token_logs_in(token: str) -> None:
    assert Sessions([TOKEN]).caller(token) is None


def test_surrounding_whitespace_of_a_pasted_token_is_ignored() -> None:
    assert Sessions([TOKEN]).caller(f"  {TOKEN}\n") == caller_id(TOKEN.encode())


def request(headers: dict[str, str], host: str = "admin.example:8000") -> bool:
    return same_origin(
        make_mocked_request("POST", "/admin/login", headers={"Host": host, **headers})
    )


def test_same_origin_by_sec_fetch_site_or_origin() -> None:
    assert request({"Sec-Fetch-Site": "same-origin"})
    assert request({"Origin": "http://admin.example:8000"})
    assert request({"Origin": "https://ADMIN.example:8000"})
    assert not request({"Sec-Fetch-Site": "same-site"})
    assert not request({"Sec-Fetch-Site": "none"})
    assert not request({"Sec-Fetch-Site": "cross-site", "Origin": "http://admin.example:8000"})
    assert not request({"Origin": "http://admin.example"})  # another port is another origin
    assert not request({"Origin": "http://evil.example"})
    assert not request({"Origin": "null"})
    assert not request({"Origin": "ftp://admin.example:8000"})
    assert not request({})


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/admin/"),
        ("/admin/users?after=3", "/admin/users?after=3"),
        ("/admin/notifications/5", "/admin/notifications/5"),
        ("https://evil.example/admin/", "/admin/"),
        ("//evil.example/admin/", "/admin/"),
        ("/admin/..//evil.example", "/admin/"),
        ("/admin/\\evil", "/admin/"),
        ("/admin/\nSet-Cookie: x", "/admin/"),
        ("/admin/login?next=/admin/", "/admin/"),
        ("/api/users/1", "/admin/"),
    ],
)
def test_safe_next_stays_on_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0.0004, "400 µs"),
        (0.0123, "12.3 ms"),
        (0.25, "250.0 ms"),
        (2.345, "2.35 s"),
        (185, "3 min 05 s"),
        (7800, "2 h 10 min"),
        (-0.002, "-2.0 ms"),
    ],
)
def test_durations_read_naturally(value: float | None, text: str) -> None:
    assert seconds(value) == text


def test_percent_and_timestamps() -> None:
    assert percent(0, 0) == "—"
    assert percent(3, 3) == "100%"
    assert percent(0, 5) == "0%"
    assert percent(1, 3) == "33.3%"
    moscow = timezone(timedelta(hours=3))
    assert when(datetime(2026, 11, 30, 15, 45, 13, 123456, tzinfo=moscow)) == (
        "2026-11-30 12:45:13.123 UTC"
    )
    assert when(None) == "—"


def test_timeline_durations_come_from_the_attempt_times() -> None:
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    notification = Notification(
        id=1,
        user_id=1,
        subject="",
        message="m",
        channels=("email", "sms"),
        status="sent",
        send_at=None,
        priority=0,
        created_at=created,
        updated_at=created,
        finished_at=created + timedelta(seconds=5),
    )

    def attempt(number: int, channel: str, start: float, length: float) -> Attempt:
        return Attempt(
            id=number,
            notification_id=1,
            channel=channel,
            attempt=1,
            status="failed",
            error=None,
            transient=True,
            provider_response={"b": 1, "a": [1, 2]} if number == 2 else None,
            started_at=created + timedelta(seconds=start),
            finished_at=created + timedelta(seconds=start + length),
        )

    first, second = timeline(
        notification, [attempt(1, "email", 0.5, 0.25), attempt(2, "sms", 2, 1)]
    )
    assert (first.duration, first.since_created, first.waited) == (0.25, 0.5, None)
    assert (second.duration, second.since_created, second.waited) == (1.0, 2.0, 1.25)
    assert first.response is None
    assert second.response == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'
