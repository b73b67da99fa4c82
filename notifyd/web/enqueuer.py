"""The API's group commit: concurrent enqueues share one INSERT and one commit.

Each request to `POST /api/notify/` waits for its row to be committed, as it would with an
INSERT of its own. A writer starts as soon as a request arrives and a writer slot is free,
so a lone request is written at once, adding no delay; while `writers` statements are
under way, new requests gather, and the next writer takes all of them (up to
`max_batch`). Under load, one transaction, one WAL flush and one NOTIFY then carry tens
of notifications instead of one each.

A batch is all or nothing. When the database refuses it (an unknown user, a constraint),
it is split in halves until the rows at fault are alone, so each request gets its own
answer and a bad request never fails a good one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from notifyd.db.notifications import Notifications
from notifyd.domain import NewNotification, Notification
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class _Pending:
    new: NewNotification
    done: asyncio.Future[Notification]


class Enqueuer:
    """Enqueues notifications, `writers` statements at a time, each a whole batch."""

    def __init__(
        self, notifications: Notifications, *, max_batch: int = 100, writers: int = 4
    ) -> None:
        self._notifications = notifications
        self._max_batch = max_batch
        self._writers = writers
        self._waiting: deque[_Pending] = deque()
        self._running: set[asyncio.Task[None]] = set()
        # Writers not yet past their last look at `_waiting`. Counted apart from `_running`:
        # a finished task leaves that set only a loop turn later, and a request arriving in
        # between must still get a writer.
        self._active = 0
        self._closed = False

    def __len__(self) -> int:
        """Requests waiting for a writer."""
        return len(self._waiting)

    async def enqueue(self, new: NewNotification) -> Notification:
        """Enqueue `new`; return it once committed (with the batch it went in)."""
        if self._closed:
            raise _shutting_down()
        done: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(new, done))
        if self._active < self._writers:
            self._active += 1
            task = asyncio.create_task(self._write_waiting(), name="enqueue-writer")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await done

    async def close(self) -> None:
        """Stop the writers; requests still waiting fail as if the database were away."""
        self._closed = True
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        while self._waiting:
            _fail(self._waiting.popleft(), _shutting_down())

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    for pending in batch:
                        _fail(pending, _shutting_down())
                    raise
                except Exception as exc:
                    # A bug in the batching itself: fail this batch loudly and go on, so the
                    # requests behind it are not left waiting.
                    log.exception("enqueue_failed", notifications=len(batch))
                    for pending in batch:
                        _fail(pending, _unexpected(exc))
        finally:
            self._active -= 1

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        waiting = self._waiting
        while waiting and len(batch) < self._max_batch:
            batch.append(waiting.popleft())
        return batch

    async def _write(self, batch: list[_Pending]) -> DatabaseUnavailableError | None:
        """Write `batch` and answer each request; the outage, if the database is away."""
        # A request cancelled before its row was written (the client went away) writes nothing.
        batch = [pending for pending in batch if not pending.done.done()]
        if not batch:
            return None
        if len(batch) == 1:
            return await self._write_one(batch[0])
        try:
            notifications = await self._notifications.enqueue([pending.new for pending in batch])
        except DatabaseUnavailableError as exc:
            for pending in batch:
                _fail(pending, _outage(exc))
            return exc
        except Exception:
            # Refused: an unknown user, a constraint, a value the driver cannot encode.
            # Halve it until the rows at fault are alone and fail on their own. One bad row
            # costs about 2 log2(batch) statements, not one per row of the batch.
            middle = len(batch) // 2
            outage = await self._write(batch[:middle])
            if outage is not None:
                for pending in batch[middle:]:
                    _fail(pending, _outage(outage))
                return outage
            return await self._write(batch[middle:])
        for pending, notification in zip(batch, notifications, strict=True):
            if not pending.done.done():
                pending.done.set_result(notification)
        return None

    async def _write_one(self, pending: _Pending) -> DatabaseUnavailableError | None:
        try:
            (notification,) = await self._notifications.enqueue([pending.new])
        except DatabaseUnavailableError as exc:
            _fail(pending, exc)
            return exc
        except Exception as exc:
            # A refusal (a NotifydError the API answers with a 4xx) or one notifyd cannot
            # name (a 500): either way this request's own.
            _fail(pending, exc)
            return None
        if not pending.done.done():
            pending.done.set_result(notification)
        return None


def _shutting_down() -> DatabaseUnavailableError:
    return DatabaseUnavailableError("database unavailable: notifyd is shutting down")


def _outage(exc: DatabaseUnavailableError) -> DatabaseUnavailableError:
    """A copy for each request: one exception object raised in many handlers would collect
    all their tracebacks."""
    copy = DatabaseUnavailableError(str(exc))
    copy.__cause__ = exc.__cause__
    return copy


def _unexpected(exc: Exception) -> RuntimeError:
    copy = RuntimeError(f"enqueue failed: {type(exc).__name__}")
    copy.__cause__ = exc
    return copy


def _fail(pending: _Pending, exc: BaseException) -> None:
    if not pending.done.done():
        pending.done.set_exception(exc)
