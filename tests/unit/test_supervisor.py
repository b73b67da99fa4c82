"""Supervised tasks: a task that ends on its own is a failure, except while stopping."""

from __future__ import annotations

import asyncio

from notifyd.delivery.supervisor import Supervisor
from tests.support import wait_until


async def test_stop_with_grace_lets_a_task_finish_what_it_holds() -> None:
    failures: list[str] = []
    supervisor = Supervisor(failures.append)
    asked = asyncio.Event()
    finished: list[str] = []

    async def claimer() -> None:
        await asked.wait()
        await asyncio.sleep(0.01)  # the claim under way
        finished.append("admitted")

    supervisor.spawn("dispatcher", claimer)
    asked.set()  # what `stop_claiming()` does
    await supervisor.stop("dispatcher", grace=5.0)

    assert finished == ["admitted"]
    assert failures == []
    assert supervisor.running() == 0


async def test_stop_cancels_what_outlives_the_grace() -> None:
    failures: list[str] = []
    supervisor = Supervisor(failures.append)
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    supervisor.spawn("dispatcher", stuck)
    await supervisor.stop("dispatcher", grace=0.05)

    assert cancelled.is_set()
    assert failures == []


async def test_a_task_that_returns_on_its_own_is_reported() -> None:
    failures: list[str] = []
    supervisor = Supervisor(failures.append)

    async def quits() -> None:
        return None

    supervisor.spawn("listener", quits)

    async def reported() -> bool:
        return failures == ["listener"]

    await wait_until(reported, deadline=5, what="the failure report")
