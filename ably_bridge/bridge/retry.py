"""Retry policy and the bounded per-sink buffer that rides out sink outages.

This module owns :class:`SinkBuffer` (a bounded FIFO of deliveries waiting for
one sink plus that sink's backoff state, timed by the package's one
:class:`~ably_bridge.protocol.retry.RetryPolicy`, re-exported here; the
bridge's is exponential, built from ``delivery.retry`` by
``RetryPolicy.from_settings``). Sleeping and timers are the driver's job; the buffer only says when
it is next ready, reading the clock it was given.

A sink has one FIFO so that retries keep per-channel order: while a sink is
failing, new deliveries for it queue behind the ones being retried. When the
buffer is full, ``offer`` refuses and the daemon must back-pressure (pause the
channel and later replay from its checkpoint).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from ably_bridge.clock import Clock
from ably_bridge.protocol.retry import RetryPolicy

__all__ = ["RetryPolicy", "SinkBuffer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SinkBuffer(Generic[T]):
    """A bounded FIFO for one sink, with the sink's consecutive-failure backoff."""

    def __init__(
        self,
        capacity: int,
        policy: RetryPolicy,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.capacity = capacity
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._items: deque[T] = deque()
        self.failures = 0  # consecutive failed attempts
        self._next_try: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self._items))

    @property
    def backing_off(self) -> bool:
        return self._next_try is not None

    def offer(self, items: Sequence[T]) -> bool:
        """Append all of ``items``, or none of them if they do not fit (back-pressure)."""
        if len(items) > self.free:
            return False
        self._items.extend(items)
        return True

    def ready(self) -> bool:
        """Items waiting and no backoff pending (or its time has come)."""
        if not self._items:
            return False
        return self._next_try is None or self._clock.monotonic() >= self._next_try

    def seconds_until_ready(self) -> float | None:
        """None when empty; 0 when ready now; else the backoff left."""
        if not self._items:
            return None
        if self._next_try is None:
            return 0.0
        return max(0.0, self._next_try - self._clock.monotonic())

    def take(self, limit: int) -> list[T]:
        """Remove and return up to ``limit`` items from the front."""
        items = self._items
        n = min(limit, len(items))
        return [items.popleft() for _ in range(n)]

    def put_back(self, items: Iterable[T]) -> None:
        """Return items to the *front*, keeping their order (they go first next time)."""
        self._items.extendleft(reversed(list(items)))

    def discard(self, drop: Callable[[T], bool]) -> int:
        """Remove the items ``drop`` selects (order of the rest kept); how many went."""
        kept = deque(item for item in self._items if not drop(item))
        gone = len(self._items) - len(kept)
        self._items = kept
        return gone

    def failed(self) -> float:
        """Record a failed attempt; returns the backoff delay chosen."""
        self.failures += 1
        delay = self.policy.delay(self.failures, self._rng.random())
        self._next_try = self._clock.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        """Record a successful attempt: the backoff resets."""
        self.failures = 0
        self._next_try = None
