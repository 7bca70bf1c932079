"""Start points: where a channel's delivery starts when no checkpoint says so.

This module owns :class:`StartPoints`. A channel's start point is decided
**once**, when the daemon first sees the channel, and never again:

* a channel found by discovery was active before the poll that found it, so it
  starts one poll interval (plus a clock-skew margin) before it was seen, and
  that history is always read;
* a configured channel starts at its first attach point: the backfill of that
  very first attachment (whose live events are all held) reads nothing, and
  any later backfill before a checkpoint exists (a pause, a lost continuity, a
  retry after the first attachment's events were dropped) reads from the
  margin before the first attach.

The start point is kept in memory until a checkpoint exists: while the
checkpoint store is down, every retry and re-attach uses the same one (it was
once recomputed as "now - interval - margin" on each retry, which skipped the
messages published while Redis was down: issue 16). The driver persists it as
the seed checkpoint of each route without one (before anything about the
channel is checkpointed) and reports that with :meth:`StartPoints.saved`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ably_bridge.bridge.core.position import Position

__all__ = ["StartPlan", "StartPoint", "StartPoints"]


@dataclass(slots=True)
class StartPoint:
    """One channel's fixed start: ``position`` and how it was found."""

    position: Position
    discovered: bool
    first_attachment: int | None = None  # the attachment whose live events were all held
    saved: bool = False  # persisted as the seed checkpoint of every route that needed one


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

    def __contains__(self, channel: str) -> bool:
        return channel in self._points

    def get(self, channel: str) -> StartPoint | None:
        return self._points.get(channel)

    def see(self, channel: str, now_ms: int, lookback_s: float = 0.0) -> StartPoint:
        """The channel's start point, fixed now if it is seen for the first time.

        ``lookback_s`` > 0 marks a discovered channel (read that far back)."""
        point = self._points.get(channel)
        if point is None:
            position = Position(timestamp=now_ms - self._skew - int(lookback_s * 1000))
            point = self._points[channel] = StartPoint(position, discovered=lookback_s > 0)
        return point

    def plan(self, channel: str, attachment: int, retry: bool) -> StartPlan:
        """The seed and whether to read from it, for a backfill of ``attachment``
        (``retry``: the same backfill again, after it failed).

        Only the first backfill of the first attachment (and its retries) may
        start at the attach point (its live events since the attach are all
        held); every other backfill reads from the fixed start point."""
        point = self._points[channel]
        if point.first_attachment is None:
            point.first_attachment = attachment
        elif not (retry and point.first_attachment == attachment):
            point.first_attachment = -1  # that attach point is behind us for good
        fresh = point.first_attachment == attachment
        return StartPlan(point.position, point.discovered or not fresh)

    def saved(self, channel: str) -> None:
        """The seed checkpoints are persisted (a checkpoint now decides where to start)."""
        point = self._points.get(channel)
        if point is not None:
            point.saved = True

    def forget(self, channel: str) -> None:
        self._points.pop(channel, None)
