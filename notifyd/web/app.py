"""The application factory: HTTP API, database and delivery service, wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from notifyd.config import Settings
from notifyd.db import Database, Route, wait_for_database
from notifyd.db.migrations import migrate
from notifyd.delivery import event_recording
from notifyd.delivery.listener import NO_LISTEN_URL
from notifyd.delivery.service import DeliveryService
from notifyd.delivery.webhooks import WebhookSender
from notifyd.errors import NotFoundError
from notifyd.logs import get_logger
from notifyd.metrics import Metrics
from notifyd.providers import build_providers
from notifyd.web.access_log import access_log_middleware
from notifyd.web.admin import add_admin
from notifyd.web.answers import notification_json
from notifyd.web.api import add_routes
from notifyd.web.auth import Authenticator, RateLimiter, auth_middleware
from notifyd.web.checks import host_middleware, query_middleware
from notifyd.web.connections import connection_middleware
from notifyd.web.enqueuer import Enqueuer
from notifyd.web.forwarded import forwarded_middleware
from notifyd.web.health import add_probe_routes
from notifyd.web.hosts import HostPolicy, is_loopback
from notifyd.web.keys import (
    DATABASE,
    ENQUEUER,
    FATAL,
    HOSTS,
    IDEMPOTENCY_KEY_SECONDS,
    LIMITS,
    METRICS,
    SERVICE,
    SETTINGS,
)
from notifyd.web.problems import problem_middleware
from notifyd.web.schemas import Limits

log = get_logger(__name__)

STARTUP_DATABASE_WAIT = 30.0


def create_app(settings: Settings, database_url: str, *, deliver: bool = True) -> web.Application:
    """Build the daemon. With `deliver=False` only the API runs (no dispatcher, no actors)."""
    api = settings.api
    authenticator = Authenticator([token.get_secret_value() for token in api.tokens])
    limiter = (
        RateLimiter(api.rate_limit, burst=max(1.0, api.rate_limit)) if api.rate_limit else None
    )
    middlewares = [
        connection_middleware(),
        problem_middleware,
        forwarded_middleware(settings.http.trusted_proxies),
        host_middleware(),
        auth_middleware(authenticator, limiter),
        query_middleware(),
    ]
    if settings.log.access_enabled:
        # Outermost: it sees every answer as sent, problems and redirects included.
        middlewares.insert(0, access_log_middleware)
    app = web.Application(client_max_size=settings.http.max_body_bytes, middlewares=middlewares)
    if not authenticator.enabled:
        _warn_open_api(settings.http.host)
    app[SETTINGS] = settings
    app[HOSTS] = HostPolicy(settings.http.host, settings.http.allowed_hosts)
    app[FATAL] = asyncio.Event()
    app[IDEMPOTENCY_KEY_SECONDS] = settings.retention.idempotency_key_hours * 3600
    app[LIMITS] = Limits(
        max_message_length=settings.limits.max_message_length,
        max_subject_bytes=settings.limits.max_subject_bytes,
    )
    app[METRICS] = Metrics()
    add_routes(app)
    add_probe_routes(app)
    add_admin(app, settings)
    app.cleanup_ctx.append(_database(database_url))
    if deliver:
        app.cleanup_ctx.append(_delivery(database_url))
    return app


def _warn_open_api(host: str) -> None:
    hint = "set api.tokens (NOTIFYD_API__TOKENS) to require a bearer token"
    if is_loopback(host):
        log.warning("api_open", host=host, hint=hint)
    else:
        # Anyone on the network can enqueue messages to every user.
        log.error("api_open_on_network", host=host, hint=hint)


def _database(
    database_url: str,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        db = app[SETTINGS].database
        loop = asyncio.get_running_loop()
        database = await wait_for_database(
            lambda: Database.connect(
                database_url,
                min_size=db.pool_min_size,
                max_size=db.pool_max_size,
                connect_timeout=db.connect_timeout,
                command_timeout=db.command_timeout,
                pooler=db.pooler,
            ),
            deadline=loop.time() + STARTUP_DATABASE_WAIT,
            on_retry=lambda error: log.warning("database_unavailable", error=error),
        )
        try:
            applied = await migrate(database.pool)
        except BaseException:
            await database.close()
            raise
        log.info("database_ready", migrations_applied=applied, database=database.route.describe())
        app[DATABASE] = database
        enqueuer = Enqueuer(
            database.notifications,
            max_batch=app[SETTINGS].api.enqueue_batch_size,
            writers=app[SETTINGS].api.enqueue_writers,
        )
        app[ENQUEUER] = enqueuer
        app[METRICS].watch(
            "notifyd_enqueue_waiting",
            "POST /api/notify/ requests waiting for a writer (the group commit's queue).",
            lambda: [("", len(enqueuer))],
        )
        yield
        await enqueuer.close()
        await database.close()

    return context


def _delivery(database_url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        providers = build_providers(settings.channels)
        for provider in providers.values():
            await provider.start()
        listen_url, poll_only = _listen_target(settings, database_url, app[DATABASE].route)
        if poll_only is not None:
            log.warning(
                "listener_disabled",
                reason=poll_only,
                poll_interval=settings.dispatcher.poll_interval,
                hint="set database.listen_url (NOTIFYD_DATABASE__LISTEN_URL) to PostgreSQL itself",
            )
        service = DeliveryService(
            settings,
            app[DATABASE].queue,
            listen_url,
            providers,
            app[METRICS],
            on_failure=lambda _name: app[FATAL].set(),
            poll_only=poll_only,
            place=app[DATABASE].place,
        )
        app[SERVICE] = service
        try:
            # Before anything is delivered: no notification this instance finishes goes
            # untold.
            await event_recording.prepare(app[DATABASE].recording, settings.webhooks, service.owner)
        except BaseException:
            for provider in providers.values():
                await provider.close()
            raise
        service.start()
        sender = _webhook_sender(app, service)
        if sender is not None:
            await sender.start()
            service.supervisor.spawn("webhooks", sender.run)
        yield
        grace = settings.shutdown.grace_seconds
        if sender is None:
            await service.stop(grace)
        else:
            # Side by side, within one grace period: one after the other, a stop with
            # deliveries and webhook sends both held up took twice as long.
            await asyncio.gather(service.stop(grace), _stop_sender(service, sender, grace))
        for provider in providers.values():
            await provider.close()

    return context


async def _stop_sender(service: DeliveryService, sender: WebhookSender, grace: float) -> None:
    """Take no more events; let the sends under way end within `grace`; hand back the rest."""
    await service.supervisor.stop("webhooks")
    await sender.close(grace=grace)


def _listen_target(
    settings: Settings, database_url: str, route: Route
) -> tuple[str | None, str | None]:
    """Where the LISTEN session goes, or why there is none (poll-only).

    `database.listen_url` when set; else `database_url` where it keeps sessions. Behind a
    transaction pooler, nowhere: LISTEN and the presence lock would stay with whichever
    server connection ran them.
    """
    listen_url = settings.database.listen_url
    if listen_url is not None:
        return listen_url.get_secret_value(), None
    if route.keeps_sessions:
        return database_url, None
    return None, NO_LISTEN_URL


def _webhook_sender(app: web.Application, service: DeliveryService) -> WebhookSender | None:
    """The status webhooks' sender, when endpoints are configured."""
    settings = app[SETTINGS].webhooks
    if not settings.endpoints:
        return None
    database = app[DATABASE]

    async def load(notification_id: int) -> dict[str, Any] | None:
        try:
            notification = await database.notifications.get(notification_id)
        except NotFoundError:
            return None
        attempts = await database.notifications.attempts([notification_id])
        return notification_json(notification, attempts[notification_id])

    sender = WebhookSender(database.webhooks, settings, service.owner, app[METRICS], load)
    app[METRICS].watch(
        "notifyd_webhook_events_held",
        "Status events this instance is sending right now.",
        lambda: [("", len(sender))],
    )
    return sender
