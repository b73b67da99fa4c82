"""How many actors each channel runs, and the collector's settings while serving."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from notifyd.cli import eventloop
from notifyd.config import DispatcherSettings
from notifyd.delivery.service import MAX_ACTORS_PER_CHANNEL, actors_per_channel


def test_actors_cover_a_claimed_batch_beside_the_writes_under_way() -> None:
    settings = DispatcherSettings(
        batch_size=100, writers=3, write_batch_size=50, max_in_flight=10_000
    )
    assert actors_per_channel(settings) == 100 + 3 * 50


def test_no_more_actors_than_notifications_held() -> None:
    # Each actor holds one delivery at a time: more would only wait for nothing.
    assert actors_per_channel(DispatcherSettings()) == DispatcherSettings().max_in_flight
    assert actors_per_channel(DispatcherSettings(max_in_flight=40)) == 40


def test_huge_batches_do_not_make_an_actor_per_row() -> None:
    settings = DispatcherSettings(
        batch_size=10_000, writers=32, write_batch_size=10_000, max_in_flight=1_000_000
    )
    assert actors_per_channel(settings) == MAX_ACTORS_PER_CHANNEL


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


# The full collection may finalise what earlier tests left behind; their errors are not
# this test's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_left_out_of_collections() -> None:
    built_at_start = ["settings", "app"]
    assert any(o is built_at_start for o in gc.get_objects())
    eventloop.settle_heap()
    # Frozen: in no generation, so no collection walks it again.
    assert not any(o is built_at_start for o in gc.get_objects())
    assert gc.get_threshold()[0] == eventloop.YOUNG_COLLECTION_THRESHOLD
