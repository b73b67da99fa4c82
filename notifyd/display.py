"""How moments and durations are shown to people, the same in the CLI and on the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

from notifyd.domain import AFTER_ALL_TIME, BEFORE_ALL_TIME, timestamp_in_range


def moment(value: datetime, *, zone: bool = True) -> str:
    """A timestamp in UTC to the millisecond: `2026-11-30 12:45:13.123 UTC`.

    One the database would refuse today (stored before its range check) says so.
    """
    if value == BEFORE_ALL_TIME:
        return "before 0001-01-01 (out of range)"
    if value == AFTER_ALL_TIME:
        return "after 9999-12-31 (out of range)"
    text = value.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds")
    text = text.removesuffix("+00:00")
    text = f"{text} UTC" if zone else text
    return text if timestamp_in_range(value) else f"{text} (out of range)"


def duration(seconds: float) -> str:
    """A short duration: `850 µs`, `12.3 ms`, `4.20 s`, `2 min 05 s`, `2 h 01 min`."""
    if seconds < 0:
        return "-" + duration(-seconds)  # clocks can step back: shown, not hidden
    if seconds < 0.001:
        return f"{seconds * 1_000_000:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
