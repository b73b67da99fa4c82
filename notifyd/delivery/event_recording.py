"""Whether status events are recorded: switched on by an instance that sends them.

The switch (`notifyd.status_event_recording`, sql/0006) is one for the whole database. An
instance with webhook endpoints turns it on when it starts, before it delivers anything,
so that no notification it finishes goes untold. Nothing here ever turns it off: another
instance, configured differently, may be the one sending, and at-least-once must hold;
an operator does (`notifyd webhooks off`).
"""

from __future__ import annotations

import socket
from typing import Final, Literal
from uuid import UUID

from notifyd.db.recording import EventRecording, Recording
from notifyd.logs import get_logger
from notifyd.webhook_settings import WebhooksSettings

log = get_logger(__name__)

Level = Literal["ok", "warning", "off"]
# What to do about events recorded with no endpoint here.
SWITCH_OFF_HINT: Final = (
    "another instance must have endpoints; if none has, turn it off with `notifyd webhooks off`"
)


def instance_name(owner: UUID) -> str:
    """Who switched it on, as the table keeps it: the host and the instance's id."""
    return f"{socket.gethostname()} (instance {owner})"


async def prepare(recording: EventRecording, settings: WebhooksSettings, owner: UUID) -> None:
    """At start: record events if this instance sends them; warn if they are sent nowhere."""
    if settings.endpoints:
        switched = await recording.switch_on(instance_name(owner))
        if switched is not None:
            log.info(
                "webhook_events_recording_on",
                instance=str(owner),
                endpoints=len(settings.endpoints),
            )
        return
    state = await recording.state()
    if state is not None:
        log.warning(
            "webhook_events_recorded_without_endpoints",
            since=state.since.isoformat(),
            switched_on_by=state.switched_on_by,
            hint=SWITCH_OFF_HINT,
        )


def describe(state: Recording | None, endpoints: int) -> tuple[Level, str]:
    """How things stand, in words, for the dashboard and `notifyd check-config`."""
    if state is None:
        if endpoints:
            return (
                "warning",
                "status events are not recorded yet: this instance turns recording on when "
                "`notifyd serve` starts",
            )
        return "off", "status events are not recorded (no instance has turned it on)"
    since = state.since.isoformat(timespec="seconds")
    recorded = f"status events are recorded since {since} (switched on by {state.switched_on_by})"
    if endpoints:
        return "ok", f"{recorded}; {endpoints} endpoint(s) here"
    return "warning", f"{recorded}, but this instance has no endpoint: {SWITCH_OFF_HINT}"
