"""Backfill planning (core/backfill_plan.py): seeds and where the gap starts, pure."""

from __future__ import annotations

from ably_bridge.bridge.core.backfill_plan import GapPlan, plan_gap
from ably_bridge.bridge.core.position import Position

SEED = Position(1_000)


def test_no_checkpoint_seeds_every_track_and_reads_from_the_seed_only_if_told() -> None:
    assert plan_gap({"a": None, "b": None}, SEED, False) == GapPlan(("a", "b"), None)
    assert plan_gap({"a": None}, SEED, True) == GapPlan(("a",), SEED)


def test_the_oldest_checkpoint_decides_and_a_new_track_is_seeded() -> None:
    old, newer = Position(500, "x"), Position(900, "y")
    plan = plan_gap({"a": newer, "b": old, "c": None}, SEED, False)
    assert plan == GapPlan(("c",), old)
    assert plan_gap({"a": newer}, SEED, True) == GapPlan((), newer)  # a checkpoint beats the seed


def test_no_tracks_no_plan() -> None:
    assert plan_gap({}, SEED, False) == GapPlan((), None)
