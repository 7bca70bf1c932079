"""The daemon process's garbage-collector settings (``tune_gc``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ably_bridge.bridge.app import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class _Node:
    other: _Node | None = None


def test_start_up_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # what existed at start-up is out of the collector's way
    # A cycle made afterwards is still found and freed.
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
