"""Status webhooks: send the outbox's events to the configured endpoints, signed.

Each event (a notification that became sent, failed or cancelled) goes to every endpoint
that wants its type, as Standard Webhooks describes: a JSON body
`{"type", "timestamp", "data"}` with `webhook-id`, `webhook-timestamp` and
`webhook-signature` headers. A 2xx is delivered; anything else (another status, a redirect,
a timeout, a refused connection) is tried again after a backoff, until `retry_for` has
passed since the status changed.

Bounded whatever the endpoints do: at most `concurrency` events are held and as many
requests are under way, over at most as many connections, each cut off after `timeout`.
An endpoint that fails is left alone for a while (its own backoff) rather than asked again
for each new event, so a dead endpoint costs a request per pause, not one per event, and
the other endpoints are not held back. It runs in tasks of its own: notification delivery
never waits for it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from notifyd.db.webhooks import StatusEvent, WebhookOutbox
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger
from notifyd.metrics import Metrics
from notifyd.webhook_settings import WebhookEndpoint, WebhooksSettings

log = get_logger(__name__)
_RANDOM = random.Random()

# The notification as GET /api/notifications/{id} answers it; None when it is gone.
LoadNotification = Callable[[int], Awaitable[dict[str, Any] | None]]
USER_AGENT: Final = "notifyd-webhooks"
# The longest error kept in the outbox row.
MAX_ERROR_LENGTH: Final = 500
# Events past webhooks.retry_for are marked failed this often at most, so many at a time.
EXPIRE_EVERY: Final = 60.0
EXPIRE_BATCH: Final = 1000


def backoff(initial: float, ceiling: float, attempts: int) -> float:
    """Exponential backoff with equal jitter: half fixed, half random."""
    top = min(ceiling, initial * 2.0 ** min(max(attempts - 1, 0), 40))
    return top / 2 + _RANDOM.uniform(0, top / 2)


def signed_headers(endpoint: WebhookEndpoint, webhook_id: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, signed with the endpoint's secret."""
    now = datetime.now(UTC)
    signer = Webhook(endpoint.secret.get_secret_value())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(webhook_id, now, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


class _Pause:
    """An endpoint that failed: not asked again before `until` (monotonic)."""

    __slots__ = ("failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0


class WebhookSender:
    """Takes due events with a lease and sends them; one `run` task per instance."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        settings: WebhooksSettings,
        owner: UUID,
        metrics: Metrics,
        load: LoadNotification,
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._owner = owner
        self._metrics = metrics
        self._load = load
        self._endpoints = settings.endpoints
        # Long enough that the holder settles before anyone else may take the event: the
        # request is cut off at `timeout`, and reading the notification is bounded too.
        self.lease_seconds = 3 * settings.timeout + 30.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._pauses: dict[str, _Pause] = {e.key: _Pause() for e in settings.endpoints}
        self._session: aiohttp.ClientSession | None = None
        self._failing = False
        self._expired_at = 0.0

    def __len__(self) -> int:
        """Events held right now."""
        return len(self._tasks)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._settings.concurrency, limit_per_host=self._settings.concurrency
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            # Proxies from the environment would let it call other hosts than configured.
            trust_env=False,
            # A receiver's cookies are not sent back to it or to any other.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self, grace: float = 0.0) -> None:
        """Let sends under way end (within `grace` s), then hand back what is left."""
        if self._tasks and grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        try:
            await self._outbox.release(self._owner)
        except DatabaseUnavailableError as exc:
            # Their leases lapse instead.
            log.warning("webhook_release_failed", error=str(exc))

    async def run(self) -> None:
        """Take what is due, as long as there is room; wait for room or the next poll."""
        settings = self._settings
        while True:
            await self._expire()
            free = settings.concurrency - len(self._tasks)
            taken = 0
            if free > 0:
                try:
                    events = await self._outbox.take(
                        self._owner, free, self.lease_seconds, settings.retry_for
                    )
                except DatabaseUnavailableError as exc:
                    if not self._failing:  # once per outage, not once per poll
                        log.warning("webhook_take_failed", error=str(exc))
                    self._failing = True
                    events = []
                else:
                    self._failing = False
                taken = len(events)
                for event in events:
                    task = asyncio.create_task(self._send(event), name=f"webhook:{event.id}")
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
            if taken and taken == free:
                continue  # a full batch: more may be due at once
            self._room.clear()
            try:
                async with asyncio.timeout(settings.poll_interval):
                    await self._room.wait()
            except TimeoutError:
                pass

    async def _expire(self) -> None:
        """Give up on what is still pending after retry_for (now and then)."""
        now = time.monotonic()
        if now - self._expired_at < min(EXPIRE_EVERY, self._settings.retry_for / 2):
            return
        self._expired_at = now
        try:
            expired = await self._outbox.expire(self._settings.retry_for, EXPIRE_BATCH)
        except DatabaseUnavailableError:
            return  # take, right after, says so
        if expired:
            self._metrics.webhook_given_up.inc(expired)
            log.error("webhook_given_up", count=expired, error="not sent within retry_for")

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "webhook_send_crashed",
                error_type=type(task.exception()).__name__,
                exc_info=task.exception(),
            )

    async def _send(self, event: StatusEvent) -> None:
        """Send one event to every endpoint that wants it and has not had it; settle it."""
        wanted = [e for e in self._endpoints if e.wants(event.type)]
        missing = [e for e in wanted if e.key not in event.delivered_to]
        delivered = set(event.delivered_to)
        errors: list[str] = []
        if missing:
            try:
                async with asyncio.timeout(self._settings.timeout):
                    data = await self._load(event.notification_id)
            except (DatabaseUnavailableError, TimeoutError) as exc:
                # Left as it is: once its lease lapses, it is taken again.
                log.warning("webhook_load_failed", event_id=event.id, error=str(exc))
                return
            if data is None:
                await self._settle(
                    event, delivered, False, "the notification no longer exists", give_up=True
                )
                return
            body = orjson.dumps(
                {
                    "type": event.type,
                    "timestamp": event.created_at.isoformat(timespec="microseconds"),
                    "data": data,
                }
            )
            results = await asyncio.gather(*(self._post(e, event, body) for e in missing))
            for endpoint, error in zip(missing, results, strict=True):
                if error is None:
                    delivered.add(endpoint.key)
                else:
                    errors.append(f"{endpoint.origin}: {error}")
        done = all(e.key in delivered for e in wanted)
        await self._settle(event, delivered, done, "; ".join(errors) or None)

    async def _post(self, endpoint: WebhookEndpoint, event: StatusEvent, body: bytes) -> str | None:
        """One request; None when it was answered 2xx, else what went wrong."""
        pause = self._pauses[endpoint.key]
        if pause.until > time.monotonic():
            return "not tried: the endpoint failed lately and is paused"
        session = self._session
        assert session is not None, "start() first"
        started = time.perf_counter()
        error: str | None
        try:
            async with session.post(
                endpoint.url,
                data=body,
                headers=signed_headers(endpoint, event.webhook_id, body),
                allow_redirects=False,
            ) as response:
                # The body is not read: whatever the receiver answers costs nothing here.
                status = response.status
            error = None if 200 <= status < 300 else f"answered HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self._settings.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # The type only: a library's message may quote the URL, and a path may hold a
            # token.
            error = f"request failed: {type(exc).__name__}"
        self._metrics.webhook_duration.observe(time.perf_counter() - started)
        if error is None:
            self._metrics.webhook_delivered.inc()
            pause.failures = 0
            pause.until = 0.0
            log.info(
                "webhook_delivered",
                event_id=event.id,
                notification_id=event.notification_id,
                type=event.type,
                endpoint=endpoint.origin,
            )
            return None
        self._metrics.webhook_failed.inc()
        pause.failures += 1
        pause.until = time.monotonic() + backoff(
            self._settings.backoff_initial, self._settings.backoff_max, pause.failures
        )
        log.warning(
            "webhook_failed",
            event_id=event.id,
            notification_id=event.notification_id,
            endpoint=endpoint.origin,
            attempt=event.attempts,
            error=error,
        )
        return error

    async def _settle(
        self,
        event: StatusEvent,
        delivered: set[str],
        done: bool,
        error: str | None,
        *,
        give_up: bool = False,
    ) -> None:
        settings = self._settings
        delay = backoff(settings.backoff_initial, settings.backoff_max, event.attempts)
        # Not due again before the endpoints it waits for are asked again.
        paused = [
            self._pauses[e.key].until
            for e in self._endpoints
            if e.wants(event.type) and e.key not in delivered
        ]
        if paused:
            delay = max(delay, max(paused) - time.monotonic())
        deadline = time.monotonic() + self.lease_seconds
        while True:
            try:
                status = await self._outbox.settle(
                    event.id,
                    self._owner,
                    delivered_to=sorted(delivered),
                    done=done,
                    delay=delay,
                    retry_for=settings.retry_for,
                    error=None if error is None else error[:MAX_ERROR_LENGTH],
                    give_up=give_up,
                )
                break
            except DatabaseUnavailableError as exc:
                if time.monotonic() > deadline:
                    # The lease has lapsed: whoever takes it next sends it again.
                    log.warning("webhook_settle_failed", event_id=event.id, error=str(exc))
                    return
                await asyncio.sleep(1.0)
        if status == "failed":
            self._metrics.webhook_given_up.inc()
            log.error(
                "webhook_given_up",
                event_id=event.id,
                notification_id=event.notification_id,
                type=event.type,
                error=error,
            )
