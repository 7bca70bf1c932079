"""The start watermark's driver: load it once, floor early seeds with it, raise it.

This module owns :class:`StartWatermark`, the I/O side of the watermark that
:mod:`.core.start_points` describes. Per scope (``all``, or a shard):

* the value a previous run left is **loaded once**, by the first backfill job
  of the scope or by a job of its own at the first tick (on the executor),
  before this run ever raises it;
* a start point decided within ``grace`` seconds of this run's start (a
  channel the previous run may have seen and lost the start point of) is
  **floored** with it (:func:`~.core.start_points.floored`), in the job;
* every ``interval`` seconds, once the loaded value is known and no job that
  loads it is still out, the watermark is **raised** to
  :meth:`~.core.start_points.StartPoints.settled_until` (a job on the executor;
  a failed raise is simply tried again with a later value) - but not past the
  previous run's value while this run is within its grace period or still has
  an early start point unsaved: those may carry a start point the previous
  run lost, which only that value covers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ably_bridge.bridge.core.position import Position
from ably_bridge.bridge.core.start_points import StartPlan, StartPoints, floored

__all__ = ["StartWatermark"]

logger = logging.getLogger(__name__)

UNKNOWN = object()


class StartWatermark:
    """See the module docstring. Methods without "job" in their name run on the
    delivery thread; :meth:`job_floor` runs on the executor."""

    def __init__(
        self,
        store: Any,
        starts: StartPoints,
        *,
        run_started_ms: int,
        skew_ms: int,
        grace_s: float,
        max_age_s: float,
        interval_s: float,
    ) -> None:
        self._load = getattr(store, "load_watermark", None)
        self._raise = getattr(store, "raise_watermark", None)
        self.enabled = self._load is not None and self._raise is not None
        self._starts = starts
        self._run_started = run_started_ms
        self._skew = skew_ms
        self._grace = int(grace_s * 1000)
        self._max_age = int(max_age_s * 1000)
        self._interval = interval_s
        self._floors: dict[str, int | None] = {}  # scope -> what the previous run left
        self._loading: dict[str, int] = {}  # scope -> jobs out that load it
        self._raised: dict[str, int] = {}
        self._next = 0.0

    # -- backfill jobs ------------------------------------------------------------------
    def submit(self, scope: str) -> Any:
        """At submit: the floor if known, else UNKNOWN (the job loads it)."""
        if not self.enabled:
            return None
        if scope in self._floors:
            return self._floors[scope]
        self._loading[scope] = self._loading.get(scope, 0) + 1
        return UNKNOWN

    def job_floor(self, scope: str, known: Any) -> int | None:
        """On the executor: the previous run's watermark (loaded if not known yet)."""
        if known is UNKNOWN and self._load is not None:
            value: int | None = self._load(scope)
            return value
        return known if isinstance(known, int) else None

    def job_seed(self, channel: str, plan: StartPlan, floor: int | None, now_ms: int) -> StartPlan:
        """On the executor: ``plan`` with its seed floored, for an early start point."""
        point = self._starts.get(channel)
        if floor is None or point is None or point.saved:
            return plan
        if point.decided_at - self._run_started > self._grace:
            return plan  # seen well after this run started: not one a crash lost
        seed = floored(
            plan.seed.timestamp, floor, point.lookback_ms, self._skew, now_ms, self._max_age
        )
        if seed >= plan.seed.timestamp:
            return plan
        return StartPlan(Position(timestamp=seed), True)

    def done(self, scope: str, submitted: Any, loaded: Any) -> None:
        """A job submitted with ``submitted`` finished; ``loaded``: what it loaded
        (UNKNOWN when it failed before knowing)."""
        if submitted is UNKNOWN:
            self._loading[scope] = max(0, self._loading.get(scope, 0) - 1)
            if loaded is not UNKNOWN and scope not in self._floors:
                self._floors[scope] = loaded

    # -- raising ------------------------------------------------------------------------
    def tick(
        self,
        now: float,
        now_ms: int,
        scopes: list[str],
        in_scope: Callable[[str, str], bool],
        executor: Executor,
        post: Callable[[Callable[[], None]], None],
    ) -> None:
        """Load what is not loaded yet, raise what may be raised (``post`` runs a
        function on the delivery thread)."""
        if not self.enabled or now < self._next:
            return
        self._next = now + self._interval
        for scope in scopes:
            if scope not in self._floors:
                if not self._loading.get(scope, 0):
                    self._loading[scope] = 1
                    future = executor.submit(self.job_floor, scope, UNKNOWN)
                    future.add_done_callback(self._when_loaded(scope, post))
                continue  # the previous run's value is not known yet: never raise over it
            if self._loading.get(scope, 0):
                continue
            scoped = _scoped(in_scope, scope)
            value = self._starts.settled_until(now_ms, scoped)
            previous = self._floors[scope]
            early = self._run_started + self._grace
            if previous is not None and (
                now_ms <= early or self._starts.unsaved_before(early, scoped)
            ):
                value = min(value, previous)
            if value <= self._raised.get(scope, -1):
                continue
            self._raised[scope] = value
            future = executor.submit(self._raise_job, scope, value)
            future.add_done_callback(self._when_raised(scope))

    def _raise_job(self, scope: str, value: int) -> None:
        assert self._raise is not None
        self._raise(scope, value)

    def _when_loaded(
        self, scope: str, post: Callable[[Callable[[], None]], None]
    ) -> Callable[[Any], None]:
        def done(future: Any) -> None:  # (any thread)
            loaded = UNKNOWN if future.exception() is not None else future.result()
            post(lambda: self.done(scope, UNKNOWN, loaded))

        return done

    def _when_raised(self, scope: str) -> Callable[[Any], None]:
        def done(future: Any) -> None:
            if future.exception() is not None:  # (any thread) tried again at the next tick
                self._raised.pop(scope, None)
                logger.debug("start watermark of %s not raised: %s", scope, future.exception())

        return done


def _scoped(in_scope: Callable[[str, str], bool], scope: str) -> Callable[[str], bool]:
    return lambda channel: in_scope(channel, scope)
