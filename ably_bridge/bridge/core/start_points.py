"""Start points: where a channel's delivery starts when no checkpoint says so.

This module owns :class:`StartPoints`. A channel's start point is decided
**once**, when the daemon first sees the channel, and never again:

* a channel found by discovery was active before the poll that found it, so it
  starts one poll interval (plus a clock-skew margin) before it was seen, and
  that history is always read;
* a configured channel starts at its first attach request, less the margin.

Every backfill before a checkpoint exists reads history from the start point,
the very first one included: between the attach request and ATTACHED no
listener receives anything, so even an attach that came at once leaves a gap
(found by the simulation; it costs one history request per channel on a
bridge's first start).

The start point is kept in memory until a checkpoint exists: while the
checkpoint store is down, every retry and re-attach uses the same one (it was
once recomputed as "now - interval - margin" on each retry, which skipped the
messages published while Redis was down: issue 16). The driver persists it as
the seed checkpoint of each route without one (before anything about the
channel is checkpointed) and reports that with :meth:`StartPoints.saved`.

**The start watermark** covers a crash before that: per scope (the whole
bridge, or one shard) the driver keeps raising a persisted watermark ``W`` to
:meth:`StartPoints.settled_until` - a time before which every start point
decided was persisted. A run that dies with unsaved start points (Redis down)
leaves ``W`` before all of them, so the next run, which finds such a channel
without a checkpoint, starts it no later than ``W`` minus its look-back and
the margin (:func:`floored`): before the start point it lost. The floor is
bounded (``max_age_ms``) so that a new route after a long downtime does not
replay days of history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ably_bridge.bridge.core.position import Position

__all__ = ["StartPlan", "StartPoint", "StartPoints", "floored"]


@dataclass(slots=True)
class StartPoint:
    """One channel's fixed start: ``position`` and how it was found."""

    position: Position
    discovered: bool
    saved: bool = False  # persisted as the seed checkpoint of every route that needed one
    decided_at: int = 0  # ms: when it was decided (the watermark waits for it until saved)
    lookback_ms: int = 0


@dataclass(frozen=True, slots=True)
class StartPlan:
    """What a backfill uses when a route has no checkpoint yet."""

    seed: Position  # the seed checkpoint to write for such a route
    read_seed: bool  # True: read history from ``seed``; False: start at the attach point


class StartPoints:
    """Fixed start points per channel (the delivery thread's; no I/O)."""

    def __init__(self, skew_ms: int) -> None:
        self._skew = skew_ms
        self._points: dict[str, StartPoint] = {}
        self._unsaved: set[str] = set()

    def __contains__(self, channel: str) -> bool:
        return channel in self._points

    def get(self, channel: str) -> StartPoint | None:
        return self._points.get(channel)

    def see(self, channel: str, now_ms: int, lookback_s: float = 0.0) -> StartPoint:
        """The channel's start point, fixed now if it is seen for the first time.

        ``lookback_s`` > 0 marks a discovered channel (read that far back)."""
        point = self._points.get(channel)
        if point is None:
            lookback_ms = int(lookback_s * 1000)
            position = Position(timestamp=now_ms - self._skew - lookback_ms)
            point = StartPoint(position, lookback_s > 0, decided_at=now_ms, lookback_ms=lookback_ms)
            self._points[channel] = point
            self._unsaved.add(channel)
        return point

    def plan(self, channel: str) -> StartPlan:
        """The seed of a backfill of ``channel`` before it has a checkpoint: read from it."""
        return StartPlan(self._points[channel].position, True)

    def saved(self, channel: str) -> None:
        """The seed checkpoints are persisted (a checkpoint now decides where to start)."""
        point = self._points.get(channel)
        if point is not None:
            point.saved = True
        self._unsaved.discard(channel)

    def lower(self, channel: str, timestamp: int) -> None:
        """Move an unsaved start point earlier (the watermark floor of :func:`floored`)."""
        point = self._points.get(channel)
        if point is not None and not point.saved and timestamp < point.position.timestamp:
            point.position = Position(timestamp=timestamp)
            point.discovered = True  # its history is read from there

    def settled_until(self, now_ms: int, in_scope: Callable[[str], bool] | None = None) -> int:
        """A time (ms) before which every start point decided (in scope) is persisted:
        the watermark may be raised to it."""
        pending = [
            self._points[ch].decided_at for ch in self._unsaved if in_scope is None or in_scope(ch)
        ]
        return min(pending) - 1 if pending else now_ms

    def unsaved_before(self, ms: int, in_scope: Callable[[str], bool] | None = None) -> bool:
        """Whether a start point decided at or before ``ms`` (in scope) is unsaved."""
        return any(
            self._points[ch].decided_at <= ms
            for ch in self._unsaved
            if in_scope is None or in_scope(ch)
        )


def floored(
    seed_ms: int, watermark: int | None, lookback_ms: int, skew_ms: int, now_ms: int,
    max_age_ms: int,
) -> int:  # fmt: skip
    """A channel's seed no later than the start point a crashed run may have lost:
    ``watermark - lookback - skew``, but not before ``now - max_age``."""
    if watermark is None:
        return seed_ms
    return max(min(seed_ms, watermark - lookback_ms - skew_ms), min(seed_ms, now_ms - max_age_ms))
