"""Probes and metrics: /healthz (alive), /readyz (able to work), /metrics (Prometheus)."""

from __future__ import annotations

import contextlib
import math

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from notifyd.db import ChannelState
from notifyd.delivery.listener import POLL_ONLY
from notifyd.domain import CHANNELS, Channel
from notifyd.errors import DatabaseUnavailableError
from notifyd.web.api import json_response
from notifyd.web.keys import DATABASE, METRICS, SERVICE

# A probe must answer quickly even when the database does not.
PROBE_TIMEOUT = 2.0
OK = "ok"


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: the process is alive and serving HTTP."""
    return json_response({"status": OK})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the database answers, and delivery is running; else 503 with reasons.

    A listener running poll-only (no LISTEN session can be had) is ready, and says why.
    """
    checks = {"database": await _database_check(request.app)}
    service = request.app.get(SERVICE)
    if service is not None:
        checks.update(service.readiness())
    # Poll-only is how the instance was set up, not a failure: it delivers, later.
    ready = all(result == OK or result.startswith(POLL_ONLY) for result in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


async def _database_check(app: web.Application) -> str:
    store = app.get(DATABASE)
    if store is None:
        return "not connected yet"
    try:
        await store.ping(PROBE_TIMEOUT)
    except DatabaseUnavailableError as exc:
        return str(exc)
    return OK


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    daemon_metrics = request.app[METRICS]
    store = request.app.get(DATABASE)
    pending = math.nan  # unknown while the database does not answer
    channels: dict[Channel, ChannelState] = {}
    if store is not None:
        with contextlib.suppress(DatabaseUnavailableError):
            pending = await store.count_pending(PROBE_TIMEOUT)
            channels = await store.channel_state(PROBE_TIMEOUT)
    daemon_metrics.pending.set(pending)
    for channel in CHANNELS:
        state = channels.get(channel)
        daemon_metrics.suppressions.labels(channel).set(
            math.nan if state is None else state.suppressed
        )
        daemon_metrics.next_slot.labels(channel).set(math.nan if state is None else state.next_slot)
    return web.Response(
        body=generate_latest(daemon_metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def add_probe_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
