"""Every key of the application's and the requests' state, in one place.

The types are imported for the type checker only, so any module may import its keys from
here without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping

    from notifyd.config import Settings
    from notifyd.db import Database
    from notifyd.delivery.service import DeliveryService
    from notifyd.metrics import Metrics
    from notifyd.web.admin.session import Sessions
    from notifyd.web.admin.throttle import LoginThrottle
    from notifyd.web.enqueuer import Enqueuer
    from notifyd.web.hosts import HostPolicy
    from notifyd.web.schemas import Limits

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
# Set when a supervised task died: the daemon must stop and exit non-zero.
FATAL: web.AppKey[asyncio.Event] = web.AppKey("fatal")
DATABASE: web.AppKey[Database] = web.AppKey("database")
# Plain enqueues go through it, so that requests arriving together share a commit.
ENQUEUER: web.AppKey[Enqueuer] = web.AppKey("enqueuer")
# Absent when the app runs without delivery (`create_app(deliver=False)`).
SERVICE: web.AppKey[DeliveryService] = web.AppKey("service")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# How long an Idempotency-Key is remembered.
IDEMPOTENCY_KEY_SECONDS: web.AppKey[float] = web.AppKey("idempotency_key_seconds")
# Message limits below the database's own (config `limits`).
LIMITS: web.AppKey[Limits] = web.AppKey("limits")
# The OpenAPI document, serialised once.
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
# The dashboard's logins (on its sub-application).
SESSIONS: web.AppKey[Sessions] = web.AppKey("admin_sessions")
# How often the dashboard's login may be tried (on its sub-application).
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("admin_login_throttle")
# The Host names served (config `http.allowed_hosts`).
HOSTS: web.AppKey[HostPolicy] = web.AppKey("hosts")

# Who is calling: a digest prefix of the API token, or of the token the dashboard's
# operator logged in with ("" when no tokens are configured). Set on /api/ and /admin/.
CALLER: web.RequestKey[str] = web.RequestKey("caller")
# The query string, decoded strictly and checked against the route's parameters.
QUERY: web.RequestKey[Mapping[str, str]] = web.RequestKey("query")
