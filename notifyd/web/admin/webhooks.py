"""The dashboard's status webhooks page: whether events are recorded, each endpoint, and
the latest events with whom they reached. Endpoints show only their scheme, host and port: a
path or query may hold a token, and the secret is never shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from notifyd.db.webhooks import EventRecord
from notifyd.delivery.event_recording import describe
from notifyd.web.keys import DATABASE, SETTINGS
from notifyd.webhook_settings import WebhookEndpoint

RECENT_EVENTS: Final = 100


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    """One endpoint over the latest events of the types it wants."""

    origin: str
    key: str
    events: tuple[str, ...]
    delivered: int
    waiting: int
    failed: int
    last_error: str | None


def summarize(endpoint: WebhookEndpoint, recent: list[EventRecord]) -> EndpointSummary:
    wanted = [e for e in recent if endpoint.wants(e.type)]
    reached = [e for e in wanted if endpoint.key in e.delivered_to]
    missed = [e for e in wanted if endpoint.key not in e.delivered_to]
    errors = [e.last_error for e in missed if e.last_error and endpoint.origin in e.last_error]
    return EndpointSummary(
        origin=endpoint.origin,
        key=endpoint.key,
        events=endpoint.events,
        delivered=len(reached),
        waiting=sum(e.status == "pending" for e in missed),
        failed=sum(e.status == "failed" for e in missed),
        last_error=errors[0] if errors else None,
    )


async def webhooks_context(request: web.Request) -> dict[str, Any]:
    """What GET /admin/webhooks shows: whether events are recorded, the endpoints, and the
    latest status events."""
    endpoints = request.config_dict[SETTINGS].webhooks.endpoints
    database = request.config_dict[DATABASE]
    recent = await database.webhooks.recent(RECENT_EVENTS)
    level, text = describe(await database.recording.state(), len(endpoints))
    return {
        "section": "webhooks",
        "recording_level": level,
        "recording_text": text,
        "endpoints": [summarize(endpoint, recent) for endpoint in endpoints],
        "recent": recent,
        "names": {endpoint.key: endpoint.origin for endpoint in endpoints},
    }
