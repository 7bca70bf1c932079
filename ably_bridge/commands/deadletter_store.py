"""Reading and deleting dead letters: the entries of a dead-letter stream, filtered.

This module owns :class:`DeadLetterEntry` (one dead letter as read back: its stream id,
its fields, where it came from and its parsed event), :class:`Selection`
(the filters of ``ably-bridge deadletter``: ids, routes, channel patterns,
reasons, origins and a time window) and :class:`DeadLetterStore`, which pages
through a stream with ``XRANGE``/``XREVRANGE`` and deletes entries by id.

Three writers share the stream format of :mod:`ably_bridge.bridge.deadletter`
(``reason``, ``code``, ``error``, ``route``, ``channel``, ``source``,
``event_id``, ``time`` and ``event``); :attr:`DeadLetterEntry.origin` tells them apart:

* ``bridge`` - written by the bridge: ``event`` is the envelope JSON, or for
  an undecodable event the raw message as it came off the wire;
* ``worker`` - written by a Celery worker for a task name it does not know
  (:mod:`workers.unknown_tasks`): ``event`` is ``{"task", "task_id", "body"}``;
* ``consumer`` - written by the Redis Streams consumer (:mod:`workers.streams`)
  after its handler failed too often: extra fields ``stream``, ``group``,
  ``consumer``, ``entry_id`` and ``deliveries``.

Entry ids are Redis stream ids; their first part is the time (ms) Redis wrote
the entry, which is what the time window filters on (``XRANGE`` bounds, so a
window over a large stream reads only that window).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from ably_bridge.bridge.patterns import NameMatcher

if TYPE_CHECKING:
    import redis

__all__ = [
    "ORIGINS",
    "DeadLetterEntry",
    "DeadLetterStore",
    "Origin",
    "Selection",
    "entry_time_ms",
    "valid_id",
]

Origin = Literal["bridge", "worker", "consumer"]
ORIGINS: tuple[Origin, ...] = ("bridge", "worker", "consumer")
_PAGE = 500
_CONSUMER_FIELDS = frozenset({"stream", "entry_id"})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def entry_time_ms(entry_id: str) -> int:
    """The ms part of a stream id (``1700000000000-0`` -> ``1700000000000``)."""
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead letter as stored: ``id`` is its stream id, ``fields`` its fields (text)."""

    id: str
    fields: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @property
    def reason(self) -> str:
        return self.get("reason")

    @property
    def route(self) -> str:
        return self.get("route")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def truncated(self) -> bool:
        return self.get("truncated") == "1"

    @property
    def time_ms(self) -> int:
        """When it was dead-lettered: the ``time`` field, else the stream id's time."""
        raw = self.get("time")
        return int(raw) if raw.isdigit() else entry_time_ms(self.id)

    @cached_property
    def event(self) -> Any:
        """The ``event`` field parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.get("event"))
        except ValueError:
            return None

    @cached_property
    def origin(self) -> Origin:
        if self.fields.keys() >= _CONSUMER_FIELDS:
            return "consumer"
        event = self.event
        if isinstance(event, dict) and {"task", "task_id", "body"} <= event.keys():
            return "worker"
        return "bridge"

    def summary(self) -> dict[str, Any]:
        """The entry's fields without the event, as JSON for ``list --json``."""
        out: dict[str, Any] = {"id": self.id, "origin": self.origin}
        for name, value in self.fields.items():
            if name == "event":
                continue
            out[name] = (
                int(value) if name in ("code", "time", "deliveries") and _int(value) else value
            )
        if self.origin == "worker" and isinstance(self.event, dict):
            out["task"] = self.event.get("task")
            out["task_id"] = self.event.get("task_id")
        return out


def _int(value: str) -> bool:
    return value.lstrip("-").isdigit()


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on. Empty filters select everything."""

    ids: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # exact names, globs (chat:*) or re:regexes
    reasons: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    _matcher: NameMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matcher", NameMatcher(self.channels))

    @property
    def narrowed(self) -> bool:
        """Whether any filter is set (purge and replay refuse an empty selection)."""
        return bool(
            self.ids
            or self.routes
            or self.channels
            or self.reasons
            or self.origins
            or self.since_ms is not None
            or self.until_ms is not None
        )

    def matches(self, entry: DeadLetterEntry) -> bool:
        if self.ids and entry.id not in self.ids:
            return False
        if self.routes and entry.route not in self.routes:
            return False
        if self.channels and not self._matcher.matches(entry.channel):
            return False
        if self.reasons and entry.reason not in self.reasons:
            return False
        if self.origins and entry.origin not in self.origins:
            return False
        ms = entry_time_ms(entry.id)
        if self.since_ms is not None and ms < self.since_ms:
            return False
        return self.until_ms is None or ms <= self.until_ms

    def bounds(self) -> tuple[str, str]:
        """The ``XRANGE`` bounds of the time window (``-``/``+`` when open)."""
        low = f"{self.since_ms}-0" if self.since_ms is not None else "-"
        high = f"{self.until_ms}-18446744073709551615" if self.until_ms is not None else "+"
        return low, high


class DeadLetterStore:
    """One dead-letter stream on one Redis: read, select, delete."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.client = client
        self.stream = stream

    def length(self) -> int:
        return int(self.client.xlen(self.stream))

    def get(self, entry_id: str) -> DeadLetterEntry | None:
        rows = self.client.xrange(self.stream, entry_id, entry_id, count=1)
        return _entry(rows[0]) if rows else None

    def select(
        self, selection: Selection, *, limit: int | None = None, newest_first: bool = False
    ) -> Iterator[DeadLetterEntry]:
        """The matching entries in stream order (or newest first), at most ``limit``."""
        if selection.ids:
            yield from self._by_ids(selection, limit, newest_first)
            return
        low, high = selection.bounds()
        found = 0
        while True:
            if newest_first:
                rows = self.client.xrevrange(self.stream, high, low, count=_PAGE)
            else:
                rows = self.client.xrange(self.stream, low, high, count=_PAGE)
            if not rows:
                return
            for row in rows:
                entry = _entry(row)
                if selection.matches(entry):
                    yield entry
                    found += 1
                    if limit is not None and found >= limit:
                        return
            if len(rows) < _PAGE:
                return
            last = _text(rows[-1][0])
            if newest_first:
                high = "(" + last
            else:
                low = "(" + last

    def _by_ids(
        self, selection: Selection, limit: int | None, newest_first: bool
    ) -> Iterator[DeadLetterEntry]:
        ids = sorted(set(selection.ids), key=_id_key, reverse=newest_first)
        found = 0
        for entry_id in ids:
            entry = self.get(entry_id)
            if entry is None or not selection.matches(entry):
                continue
            yield entry
            found += 1
            if limit is not None and found >= limit:
                return

    def delete(self, ids: Sequence[str]) -> int:
        """Delete entries by id; how many were there."""
        deleted = 0
        for start in range(0, len(ids), _PAGE):
            chunk = list(ids[start : start + _PAGE])
            if chunk:
                deleted += int(self.client.xdel(self.stream, *chunk))
        return deleted


def _id_key(entry_id: str) -> tuple[int, int]:
    head, _, tail = entry_id.partition("-")
    return (int(head) if head.isdigit() else 0, int(tail) if tail.isdigit() else 0)


def _entry(row: Any) -> DeadLetterEntry:
    entry_id, raw = row
    return DeadLetterEntry(_text(entry_id), {_text(k): _text(v) for k, v in raw.items()})


def valid_id(text: str) -> bool:
    """Whether ``text`` looks like a stream id (``<ms>`` or ``<ms>-<seq>``)."""
    head, sep, tail = text.partition("-")
    return head.isdigit() and (not sep or tail.isdigit())
