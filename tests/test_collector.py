"""The collector tuning the server applies once start-up is over."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from backend.collector import YOUNG_THRESHOLD, tune_after_startup


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_are_frozen_and_the_young_generation_widened(
        restored_collector: None) -> None:
    gc.unfreeze()
    made_at_startup = [[i] for i in range(1000)]  # tracked containers, alive at the call
    tune_after_startup()
    assert gc.get_freeze_count() >= len(made_at_startup)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    # Later objects are collected as usual: a cycle made now is found by a collection.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
