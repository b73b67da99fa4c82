"""The dashboard tests start from a daemon that is ready (present, first claim done)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
def daemon_factory(daemon_factory: DaemonFactory) -> DaemonFactory:
    """The shared factory, waiting until each daemon is ready.

    These tests are short enough to stop a daemon in the moment its listener connects,
    and on Python 3.11 `asyncio.wait_for` can then swallow the cancellation of the lease
    keeper (it waits on the presence event with wait_for), so the stop never ends.
    """

    async def factory(**overrides: Any) -> Daemon:
        daemon = await daemon_factory(**overrides)
        await daemon.app_ready()
        return daemon

    return factory
