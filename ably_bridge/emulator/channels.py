"""One channel's server-side state: history, presence set, presence history.

A :class:`Channel` is plain data plus the queries REST and realtime need:
history windows (RSL2: start/end/direction/limit and the ``fromSerial``
attach point of RTL10b), the presence member map keyed by ``memberKey``
(TP3h) and its history. Serials are opaque strings that sort in publish order
(a zero-padded per-channel counter), so "everything after channelSerial X" is
a string comparison. No I/O and no clock reads: callers pass ``now``.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.emulator.actions import P_LEAVE, P_PRESENT

SERIAL_WIDTH = 16


def make_serial(counter: int) -> str:
    return str(counter).zfill(SERIAL_WIDTH)  # counters are never negative


@dataclass(frozen=True)
class Page:
    """One page of a query: items, and the cursor for the next page (None = last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass
class Channel:
    """Server state of one channel of one app (base name, without qualifiers)."""

    app_id: str
    name: str
    counter: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    presence: dict[str, dict[str, Any]] = field(default_factory=dict)
    presence_history: list[dict[str, Any]] = field(default_factory=list)
    idempotent_ids: OrderedDict[str, str] = field(default_factory=OrderedDict)
    last_activity_ms: int = 0
    # Realtime attachments, keyed by (connectionId, qualified name); values are
    # owned by the realtime layer (the state only counts them for occupancy).
    attachments: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Serials at or below this one can no longer be resumed from: the messages
    # after them are gone (retention) or continuity was expired by a fault.
    resume_floor: str = field(default_factory=lambda: make_serial(0))
    # serial -> every version of a message changed since (mutations.py), oldest first
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # message serial -> its annotations in the order they came (message_annotations.py)
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # make_serial(counter), kept beside it: every fan-out frame carries it
    _serial: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        self._serial = make_serial(self.counter)

    # -- serials -------------------------------------------------------
    def next_serial(self) -> str:
        self.counter += 1
        self._serial = serial = make_serial(self.counter)
        return serial

    @property
    def current_serial(self) -> str:
        return self._serial

    def knows_serial(self, serial: str) -> bool:
        """True when an ATTACH from ``serial`` can continue without a gap (RTL15b).

        The serial must be one this channel has reached, not below the resume
        floor, and every message published after it must still be retained;
        otherwise the attach is answered without RESUMED (loss of continuity).
        Presence events share the serial counter and are kept apart (never
        trimmed): the serials between ``serial`` and the first retained message
        must all be theirs.
        """
        if len(serial) != SERIAL_WIDTH or not serial.isdigit():
            return False
        if not self.resume_floor <= serial <= self.current_serial:
            return False
        if serial == self.current_serial:
            return True
        first_retained = int(self.history[0]["serial"]) if self.history else self.counter + 1
        between = first_retained - int(serial) - 1
        if between <= 0:
            return True
        serials = [e["serial"] for e in self.presence_history]
        presence_between = bisect.bisect_left(
            serials, make_serial(first_retained)
        ) - bisect.bisect_right(serials, serial)
        return presence_between == between  # else a message after it is gone

    def expire_continuity(self) -> None:
        """No serial issued so far can be resumed from (a fault, or Ably losing state)."""
        self.resume_floor = make_serial(self.counter + 1)

    # -- history -------------------------------------------------------
    def append_history(
        self, message: dict[str, Any], ttl_ms: int | None, max_items: int | None, now_ms: int
    ) -> None:
        self.history.append(message)
        if max_items is not None and len(self.history) > max_items:
            del self.history[: len(self.history) - max_items]
        if ttl_ms is not None:
            cutoff = now_ms - ttl_ms
            drop = 0
            while drop < len(self.history) and self.history[drop].get("timestamp", 0) < cutoff:
                drop += 1
            if drop:
                del self.history[:drop]

    def messages_after(self, serial: str) -> list[dict[str, Any]]:
        """Messages published after ``serial`` in order (resume replay, RTN15c6)."""
        serials = [m["serial"] for m in self.history]
        return self.history[bisect.bisect_right(serials, serial) :]

    def events_after(self, serial: str) -> list[tuple[bool, dict[str, Any]]]:
        """Messages and presence events after ``serial``, in serial order, as
        ``(is presence, item)``: what a resumed attach replays (RTL15b, RTN15c6).
        Both take serials from the one channel counter, so a merge orders them."""
        messages = self.messages_after(serial)
        serials = [e["serial"] for e in self.presence_history]
        events = self.presence_history[bisect.bisect_right(serials, serial) :]
        merged = [(False, m) for m in messages] + [(True, e) for e in events]
        merged.sort(key=lambda pair: pair[1]["serial"])
        return merged

    def remember_id(self, message_id: str, serial: str, window: int) -> None:
        self.idempotent_ids[message_id] = serial
        while len(self.idempotent_ids) > window:
            self.idempotent_ids.popitem(last=False)

    # -- presence ------------------------------------------------------
    def members(
        self, client_id: str | None = None, connection_id: str | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for member in self.presence.values():
            if client_id is not None and member.get("clientId") != client_id:
                continue
            if connection_id is not None and member.get("connectionId") != connection_id:
                continue
            out.append(member)
        return out

    def apply_presence(self, event: dict[str, Any]) -> None:
        """Update the member map from an ENTER/UPDATE/PRESENT/LEAVE event (RTP2)."""
        key = f"{event.get('connectionId')}:{event.get('clientId')}"
        if event.get("action") == P_LEAVE:
            self.presence.pop(key, None)
        else:
            stored = dict(event)
            stored["action"] = P_PRESENT
            self.presence[key] = stored
        self.presence_history.append(event)


def query_history(
    items: list[dict[str, Any]],
    *,
    start: int | None,
    end: int | None,
    backwards: bool,
    limit: int,
    cursor: str | None,
    until_serial: str | None = None,
) -> Page:
    """A page of serial-ordered ``items`` within [start, end] (RSL2b); cursor is a serial."""
    selected: list[dict[str, Any]] = []
    sequence = reversed(items) if backwards else iter(items)
    for item in sequence:
        serial = item.get("serial", "")
        if cursor is not None and (serial >= cursor if backwards else serial <= cursor):
            continue
        if until_serial is not None and serial > until_serial:
            continue
        ts = int(item.get("timestamp") or 0)
        # Timestamps may be client-supplied, so they are filtered, not bisected.
        if (start is not None and ts < start) or (end is not None and ts > end):
            continue
        selected.append(item)
        if len(selected) > limit:
            break
    if len(selected) > limit:
        page = selected[:limit]
        return Page(page, str(page[-1].get("serial", "")))
    return Page(selected, None)
