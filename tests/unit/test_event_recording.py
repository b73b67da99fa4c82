"""What the dashboard and `notifyd check-config` say of the status event switch."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from notifyd.db.recording import Recording
from notifyd.delivery.event_recording import describe, instance_name

ON = Recording(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "app-1 (instance x)")


def test_off_without_endpoints_is_nothing_to_do() -> None:
    level, text = describe(None, 0)
    assert level == "off"
    assert "not recorded" in text


def test_off_with_endpoints_waits_for_serve() -> None:
    level, text = describe(None, 2)
    assert level == "warning"
    assert "not recorded yet" in text
    assert "notifyd serve" in text


def test_on_with_endpoints_says_since_when_and_by_whom() -> None:
    level, text = describe(ON, 1)
    assert level == "ok"
    assert "since 2026-11-30T12:00:00+00:00" in text
    assert "app-1 (instance x)" in text


def test_on_without_endpoints_warns_with_the_way_out() -> None:
    level, text = describe(ON, 0)
    assert level == "warning"
    assert "no endpoint" in text
    assert "notifyd webhooks off" in text


def test_the_instance_is_named_by_its_id() -> None:
    owner = UUID(int=7)
    assert str(owner) in instance_name(owner)
