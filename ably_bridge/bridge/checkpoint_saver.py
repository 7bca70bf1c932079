"""Saving checkpoints: how often, and what happens while the store is down.

This module owns :class:`CheckpointSaver`, the dispatcher's writer of what the
delivery ledger (:mod:`.core.ledger`) allows: the ledger says how far each
(track, channel) checkpoint may move; the saver decides when to write it and
writes it through the :class:`~.checkpoint.CheckpointStore`.

* With an ``interval`` > 0, saves are spaced at least that far apart while
  events keep being confirmed (under load every pump confirms something; a
  later save only moves further, and a crash replays a little more).
* A save that fails (the store is down) keeps its positions in the ledger and
  is tried again ``SAVE_RETRY`` seconds later, even if nothing else is
  confirmed meanwhile; :meth:`CheckpointSaver.seconds_until_due` tells the
  daemon when.
* A shard's fencing tokens travel with its positions, so a replica that lost
  the shard cannot move its checkpoint (:mod:`.fencing`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.core.position import route_of_track
from ably_bridge.clock import Clock

if TYPE_CHECKING:
    from ably_bridge.bridge.checkpoint import CheckpointStore
    from ably_bridge.bridge.core.ledger import DeliveryLedger

__all__ = ["SAVE_RETRY", "CheckpointSaver"]

logger = logging.getLogger("ably_bridge.bridge.dispatch")  # the dispatcher's log, as before

SAVE_RETRY = 0.5  # seconds between attempts to save checkpoints while the store fails


class CheckpointSaver:
    """Writes the checkpoints a ledger allows (see the module docstring)."""

    def __init__(
        self,
        store: CheckpointStore | None,
        ledger: DeliveryLedger[Any, Any],
        clock: Clock,
        interval: float = 0.0,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        # > 0: checkpoints are saved at most this often (seconds); 0: on every pump.
        self._interval = interval
        self._next_save = 0.0  # monotonic time before which no save starts
        self._failed = False  # the last save failed: try again SAVE_RETRY later

    def seconds_until_due(self) -> float | None:
        """Seconds until a deferred save is due (0: now), or None when none waits."""
        if self._ledger.unsaved and (self._interval > 0 or self._failed):
            return max(0.0, self._next_save - self._clock.monotonic())
        return None

    def advance(self, touched: Iterable[tuple[str, str]], *, force: bool = False) -> int:
        """Move the ledger over what ``touched`` settled and save what is due;
        the number of checkpoints saved."""
        ledger = self._ledger
        ledger.advance(touched, self._clock.time_ms)
        store = self._store
        if store is None or not ledger.unsaved:
            ledger.unsaved.clear()
            return 0
        if (self._interval > 0 or self._failed) and not force:
            now = self._clock.monotonic()
            if now < self._next_save:
                return 0  # seconds_until_due() tells the daemon when
            self._next_save = now + self._interval
        self._failed = False
        saved = 0
        for track in list(ledger.unsaved):
            positions = ledger.unsaved[track]
            fences = ledger.take_fences(track, positions)
            try:
                if fences:
                    store.advance_many(track, positions, fences)
                else:  # (stores without fencing take two arguments)
                    store.advance_many(track, positions)
            except Exception as exc:  # kept and saved again SAVE_RETRY later
                route, presence = route_of_track(track)
                logger.warning(
                    "%scheckpoints of route %s not saved: %s",
                    "presence " if presence else "", route, exc,
                )  # fmt: skip
                if fences:
                    ledger.save_failed(track, fences)
                self._failed = True
                self._next_save = max(self._next_save, self._clock.monotonic() + SAVE_RETRY)
                continue
            saved += ledger.saved(track)
        return saved
