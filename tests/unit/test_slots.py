"""Vendor slots: at most N holders, handed to waiters in the order they came."""

from __future__ import annotations

import asyncio

import pytest

from notifyd.delivery.slots import VendorSlots


async def test_holders_never_exceed_the_slots_and_waiters_go_in_order() -> None:
    slots = VendorSlots(2)
    holding: list[int] = []
    order: list[int] = []
    release = asyncio.Event()

    async def holder(n: int) -> None:
        async with slots:
            holding.append(n)
            order.append(n)
            assert len(holding) <= 2
            await release.wait()
            holding.remove(n)

    tasks = [asyncio.create_task(holder(n)) for n in range(6)]
    await asyncio.sleep(0)
    assert holding == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_a_cancelled_waiter_passes_a_slot_it_was_handed_on() -> None:
    slots = VendorSlots(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with slots:
            await gate.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    second = asyncio.create_task(hold())
    third = asyncio.create_task(hold())
    await asyncio.sleep(0)
    gate.set()
    await asyncio.sleep(0)  # `first` ends and hands the slot to `second`...
    assert first.done()
    assert not second.done()
    second.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await second
    await asyncio.wait_for(third, 5)  # the slot went on to `third`, not lost
    async with slots:  # and it is free again afterwards
        pass
