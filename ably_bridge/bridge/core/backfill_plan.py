"""Backfill planning: where a channel's gap starts, from its tracks' checkpoints.

This module owns :func:`plan_gap`, the decision :mod:`ably_bridge.bridge.backfill`
carries out for messages and for presence alike: given what each checkpoint
track of the channel holds (a position, or nothing yet) and the channel's
start plan (:mod:`.start_points`), which tracks get the start point written as
their seed checkpoint, and where history is read from (or nothing is read).

* The oldest checkpoint of the tracks decides (every track must be covered).
* A track without one is seeded with the start point, before anything of the
  channel is delivered, so that a crash before its first delivery replays.
* With no checkpoint at all, history is read from the start point when the
  plan says so (a discovered channel, or any backfill after the first
  attachment's first); else the gap starts at the attach point: nothing to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ably_bridge.bridge.core.position import Position

__all__ = ["GapPlan", "plan_gap"]


@dataclass(frozen=True, slots=True)
class GapPlan:
    seed_tracks: tuple[str, ...]  # write the seed as these tracks' first checkpoint
    read_from: Position | None  # read history after this; None: nothing to read


def plan_gap(
    checkpoints: Mapping[str, Position | None], seed: Position, read_seed: bool
) -> GapPlan:
    """The plan for tracks whose checkpoints are ``checkpoints`` (see the module docstring)."""
    missing = tuple(track for track, pos in checkpoints.items() if pos is None)
    positions = [pos for pos in checkpoints.values() if pos is not None]
    if not positions:
        return GapPlan(missing, seed if read_seed else None)
    return GapPlan(missing, min(positions, key=lambda p: p.timestamp))
