"""How the dashboard shows values: template filters, and the attempt timeline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from notifyd.domain import Attempt, Notification


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One attempt, with the durations the detail page shows."""

    attempt: Attempt
    # How long the attempt took.
    duration: float
    # From the notification's creation to the attempt's start.
    since_created: float
    # From the previous attempt's end (the backoff, or a fallback's hand-over); None first.
    waited: float | None
    # The vendor's answer as indented JSON, or None.
    response: str | None


def timeline(notification: Notification, attempts: Sequence[Attempt]) -> list[TimelineEntry]:
    entries = []
    previous: Attempt | None = None
    for attempt in attempts:
        entries.append(
            TimelineEntry(
                attempt=attempt,
                duration=(attempt.finished_at - attempt.started_at).total_seconds(),
                since_created=(attempt.started_at - notification.created_at).total_seconds(),
                waited=(
                    None
                    if previous is None
                    else (attempt.started_at - previous.finished_at).total_seconds()
                ),
                response=pretty_json(attempt.provider_response),
            )
        )
        previous = attempt
    return entries


def pretty_json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def when(value: datetime | None) -> str:
    """A timestamp in UTC, to the millisecond: 2026-11-30 12:45:13.123 UTC."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="microseconds")


def seconds(value: float | None) -> str:
    """A duration: 0.8 ms, 412 ms, 2.35 s, 3 min 5 s, 2 h 10 min."""
    if value is None:
        return "—"
    sign, value = ("-", -value) if value < 0 else ("", value)
    if value < 1:
        millis = value * 1000
        return f"{sign}{millis:.1f} ms" if millis < 10 else f"{sign}{millis:.0f} ms"
    if value < 60:
        return f"{sign}{value:.2f} s"
    minutes, rest = divmod(int(value), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes} min"


def percent(part: int, whole: int) -> str:
    if not whole:
        return "—"
    return f"{100 * part / whole:.0f}%" if part in (0, whole) else f"{100 * part / whole:.1f}%"


def truncate(value: str, length: int = 80) -> str:
    return value if len(value) <= length else value[: length - 1] + "…"


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "iso": iso,
    "seconds": seconds,
    "truncate_text": truncate,
}
