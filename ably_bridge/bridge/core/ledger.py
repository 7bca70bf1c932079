"""The delivery ledger: what every target confirmed, and how far a checkpoint may move.

This module owns :class:`DeliveryLedger`, the dispatcher's accounting of events
in flight, with no I/O of its own (the dispatcher, :mod:`ably_bridge.bridge.dispatch`,
delivers and saves; this decides):

* every accepted event is an :class:`Entry` on its checkpoint track and
  channel, in arrival order, counting the targets that have not answered yet;
* an entry is **settled** once every target confirmed it (delivered, already
  there, dead-lettered) - or refused it as fenced, in which case it is settled
  but never counted as delivered by us: its position never reaches a
  checkpoint and it does not enter the dedup window (the new shard owner
  delivers it);
* a (track, channel) checkpoint may move over the longest *contiguous* run of
  settled entries from the oldest one, to the last of them that has a position
  and was not fenced (:meth:`DeliveryLedger.advance`); a slow or failing
  target holds it back. Positions wait in :attr:`DeliveryLedger.unsaved`
  (with the shard fence of their last event) until the driver saved them.

Entries carry the envelope and the fence as opaque values: the ledger reads
only an envelope's ``channel`` and ``timestamp``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ably_bridge.bridge.core.position import Position

__all__ = ["LAST_SETTLED_MAX", "DeliveryLedger", "Entry", "Tracked"]

LAST_SETTLED_MAX = 100_000  # (track, channel) pairs whose last settled event is kept


class Tracked(Protocol):
    """What the ledger reads of an envelope."""

    @property
    def channel(self) -> str: ...

    @property
    def timestamp(self) -> int: ...


E = TypeVar("E", bound=Tracked)
F = TypeVar("F")


@dataclass(slots=True, eq=False)
class Entry(Generic[E, F]):
    """One accepted event on its track: the targets still to answer, and how it ended.

    (Made for every event: not frozen, which would cost three times as much.)
    """

    envelope: E
    position: Position | None  # None: nothing a checkpoint holds (lifecycle events)
    remaining: int  # targets that have not answered yet
    track: str  # the checkpoint track: the route id, or its presence track
    done: bool = False
    fenced: bool = False  # a target refused it (stale shard lease): not delivered by us
    fence: F | None = None  # the shard token when accepted (shard leases only)


class DeliveryLedger(Generic[E, F]):
    """See the module docstring. Single-threaded, like the dispatcher that owns it;
    :meth:`backlog` alone may be called from another thread."""

    def __init__(self, last_settled_max: int = LAST_SETTLED_MAX) -> None:
        self._order: dict[tuple[str, str], deque[Entry[E, F]]] = {}
        # track -> channel -> the position a checkpoint may move to, not saved yet.
        self.unsaved: dict[str, dict[str, Position]] = {}
        self.unsaved_fences: dict[tuple[str, str], F] = {}
        # Envelopes settled (and delivered by us) since the driver last took them.
        self.finished: list[E] = []
        # (track, channel) -> the last event settled in order and when (epoch ms);
        # read by the status endpoint, bounded by ``last_settled_max``.
        self.last_settled: dict[tuple[str, str], tuple[Position, int]] = {}
        self._last_settled_max = last_settled_max

    # -- events in ----------------------------------------------------------------------
    def record(self, channel: str, entries: Iterable[Entry[E, F]]) -> None:
        """Entries of ``channel`` accepted, in order; one with no target is settled now."""
        orders = self._order
        for entry in entries:
            key = (entry.track, channel)
            order = orders.get(key)
            if order is None:
                order = orders[key] = deque()
            order.append(entry)
            if entry.remaining == 0:
                self._settle(entry)

    def target_done(self, entry: Entry[E, F], touched: set[tuple[str, str]]) -> None:
        """One target answered for ``entry`` for good; its key joins ``touched`` when
        that settled it."""
        entry.remaining -= 1
        if entry.remaining <= 0 and not entry.done:
            self._settle(entry)
            touched.add((entry.track, entry.envelope.channel))

    def take_finished(self) -> list[E]:
        """The envelopes settled by us since the last call (for the dedup window)."""
        finished = self.finished
        self.finished = []
        return finished

    # -- checkpoints --------------------------------------------------------------------
    def advance(self, touched: Iterable[tuple[str, str]], now_ms: Callable[[], int]) -> None:
        """Move each touched (track, channel) over its settled run into :attr:`unsaved`
        (``now_ms`` is read once, when something moved)."""
        settled_at = 0
        for key in touched:
            order = self._order.get(key)
            last: Entry[E, F] | None = None
            while order and order[0].done:
                entry = order.popleft()
                if entry.position is not None and not entry.fenced:
                    last = entry
            if order is not None and not order:
                del self._order[key]
            if last is not None and last.position is not None:
                track, channel = key
                self.unsaved.setdefault(track, {})[channel] = last.position
                settled_at = settled_at or now_ms()
                self._note_settled(key, last.position, settled_at)
                if last.fence is not None:
                    self.unsaved_fences[key] = last.fence

    def take_fences(self, track: str, positions: Iterable[str]) -> dict[str, F]:
        """The fences of ``track``'s unsaved ``positions`` (channels), taken out to save."""
        if not self.unsaved_fences:
            return {}
        fences = self.unsaved_fences
        return {ch: f for ch in positions if (f := fences.pop((track, ch), None)) is not None}

    def save_failed(self, track: str, fences: dict[str, F]) -> None:
        """Saving ``track`` failed: its fences go back with its positions (kept)."""
        self.unsaved_fences.update({(track, ch): f for ch, f in fences.items()})

    def saved(self, track: str) -> int:
        """``track``'s unsaved positions were saved; how many."""
        return len(self.unsaved.pop(track, {}))

    # -- queries ------------------------------------------------------------------------
    def checkpoint_lag(self, now_ms: int) -> float:
        """Seconds since the oldest event that holds a checkpoint back was sent (0: none)."""
        oldest = min(
            (order[0].envelope.timestamp for order in self._order.values() if order),
            default=None,
        )
        if oldest is None or oldest <= 0:
            return 0.0
        return max(0.0, (now_ms - oldest) / 1000.0)

    def backlog(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(track, channel) -> (events not settled yet, timestamp of the oldest) for
        every pair with some; safe to call from another thread (a copy, read once)."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for key, order in list(self._order.items()):
            try:
                out[key] = (len(order), order[0].envelope.timestamp)
            except IndexError:  # settled meanwhile
                continue
        return out

    def unsettled_channels(self) -> set[str]:
        """Channels with events not yet settled or positions not yet saved."""
        out = {channel for (_, channel), order in self._order.items() if order}
        for positions in self.unsaved.values():
            out.update(positions)
        return out

    def forget(self, channels: set[str]) -> None:
        """Drop everything about ``channels`` (their shard was lost): nothing of it may
        reach a checkpoint any more."""
        for key in [k for k in self._order if k[1] in channels]:
            del self._order[key]
        for key in [k for k in self.last_settled if k[1] in channels]:
            del self.last_settled[key]
        for track, positions in self.unsaved.items():
            for channel in channels & positions.keys():
                del positions[channel]
                self.unsaved_fences.pop((track, channel), None)

    # -- internals ----------------------------------------------------------------------
    def _settle(self, entry: Entry[E, F]) -> None:
        entry.done = True
        if not entry.fenced:  # fenced: not delivered by us, a replay must go out
            self.finished.append(entry.envelope)

    def _note_settled(self, key: tuple[str, str], position: Position, at_ms: int) -> None:
        known = self.last_settled
        known.pop(key, None)  # (re-inserted last: the oldest pairs are dropped past the bound)
        known[key] = (position, at_ms)
        bound = self._last_settled_max
        if len(known) > bound:
            for old in list(known)[: len(known) - bound // 2]:
                del known[old]
