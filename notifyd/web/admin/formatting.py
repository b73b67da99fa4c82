"""How the dashboard shows values: template filters, and the attempt timeline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from notifyd import display
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
    return "—" if value is None else display.moment(value)


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="microseconds")


def seconds(value: float | None) -> str:
    """A duration, as the CLI shows it: 850 µs, 12.3 ms, 2.35 s, 3 min 05 s."""
    return "—" if value is None else display.duration(value)


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
