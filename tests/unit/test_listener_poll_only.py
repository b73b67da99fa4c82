"""The listener without a LISTEN session: poll-only, following whether the database answers."""

from __future__ import annotations

import asyncio
import uuid

from notifyd.delivery.listener import POLL_ONLY, Listener
from notifyd.errors import DatabaseUnavailableError
from tests.support import wait_until


class FlakyPing:
    """A database that answers or not, as the test says; counts the pings."""

    def __init__(self) -> None:
        self.up = True
        self.pings = 0

    async def __call__(self, _timeout: float) -> None:
        self.pings += 1
        if not self.up:
            raise DatabaseUnavailableError("database unavailable: down")


def poll_only_listener(ping: FlakyPing, backoff_max: float = 60.0) -> tuple[Listener, list[int]]:
    woken: list[int] = []
    listener = Listener(
        None,
        uuid.uuid4(),
        lambda: woken.append(1),
        ping=ping,
        check_interval=0.01,
        connect_timeout=1.0,
        backoff_max=backoff_max,
        poll_only="no LISTEN here",
    )
    return listener, woken


async def test_poll_only_claims_without_a_session_and_never_claims_presence() -> None:
    ping = FlakyPing()
    listener, woken = poll_only_listener(ping)
    assert listener.poll_only == "no LISTEN here"
    task = asyncio.create_task(listener.run())
    try:
        await wait_until(lambda: _true(listener.may_claim()), what="may claim")
        await wait_until(lambda: _true(ping.pings >= 3), what="pings")
        assert woken, "the dispatcher is woken at start"
        assert listener.working.is_set(), "the lease keeper beats at its pace"
        assert not listener.connected.is_set()
        assert not listener.present.is_set()
        assert listener.peers_settled(), "reachable from the start: peers are judged at once"
    finally:
        task.cancel()
    assert POLL_ONLY == "poll-only"


async def test_after_an_outage_peers_are_given_time_to_beat_again() -> None:
    """Every peer's heartbeat looks stale right after an outage: no takeover at once."""
    ping = FlakyPing()
    listener, _ = poll_only_listener(ping, backoff_max=60.0)
    task = asyncio.create_task(listener.run())
    try:
        await wait_until(lambda: _true(listener.peers_settled()), what="settled")
        ping.up = False
        await wait_until(lambda: _true(not listener.peers_settled()), what="outage noticed")
        ping.up = True
        await wait_until(lambda: _true(listener.reconnects == 1), what="database back")
        assert not listener.peers_settled()
        assert listener.may_claim(), "its own work goes on meanwhile"
    finally:
        task.cancel()


async def _true(value: bool) -> bool:
    return value
