"""De-duplication: the key scheme shared by the bridge and workers, and the guards.

This module owns how an event is recognised as already delivered:

* :func:`stream_dedup_keys` / :func:`stream_dedup_field` - the per-stream,
  time-bucketed hashes the Redis Streams Lua script checks and marks in the
  same atomic step as its ``XADD``. A mark lives between ``ttl`` and ``2 * ttl``
  seconds (the current and the previous bucket are checked).
* :func:`celery_task_id` - the deterministic Celery task id of an event for one
  route and task, so a re-sent event carries the same id.
* :class:`DedupWindow` - a bounded in-memory LRU of recently *confirmed* events,
  so the hot path skips obvious replays (history overlap after a reattach)
  without a Redis round trip. Only add keys after every target confirmed.

The worker side of the scheme, the guard that runs a redelivered task once, is
:class:`workers.guard.WorkerGuard`.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable

from ably_bridge.bridge.redis_keys import RedisKeys

__all__ = [
    "TASK_ID_NAMESPACE",
    "DedupWindow",
    "celery_task_id",
    "dedup_bucket",
    "stream_dedup_field",
    "stream_dedup_keys",
]

# uuid5 namespace of bridge task ids (a fixed, random UUID: never change it, or
# events re-sent after an upgrade would get new ids).
TASK_ID_NAMESPACE = uuid.UUID("6f1d2b8e-3c4a-5e9f-8a7b-2d1c0e9f8a6b")
_TASK_ID_PREFIX = TASK_ID_NAMESPACE.bytes


def dedup_bucket(now: float, ttl: float) -> int:
    """The time bucket (``ttl`` seconds wide) that ``now`` falls in."""
    return int(now // ttl)


def stream_dedup_keys(
    prefix: str, stream: str, now: float, ttl: float, *, cluster: bool = False
) -> tuple[str, str]:
    """The (current, previous) dedup hash keys of ``stream`` at time ``now``
    (:meth:`~.redis_keys.RedisKeys.stream_dedup`)."""
    bucket = dedup_bucket(now, ttl)
    keys = RedisKeys(prefix, cluster=cluster)
    return keys.stream_dedup(stream, bucket), keys.stream_dedup(stream, bucket - 1)


def stream_dedup_field(route_id: str, dedup_key: str) -> str:
    """The hash field marking one event of one route (``Envelope.dedup_key``); the
    same text as ``Envelope.route_key``, which the sink reads (made once per event)."""
    return f"{route_id}|{dedup_key}"


def celery_task_id(route_id: str, task_name: str, dedup_key: str) -> str:
    """Deterministic task id: uuid5 of route, task name and the event's dedup key.

    The task name is part of the seed so that two Celery targets of one route
    get different ids (the worker guard keys on the id).
    """
    # uuid.uuid5 (RFC 4122 section 4.3) without the UUID object: the same text.
    digest = bytearray(
        hashlib.sha1(
            _TASK_ID_PREFIX + f"{route_id}:{task_name}:{dedup_key}".encode(), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class DedupWindow:
    """A bounded, thread-safe LRU set of recently confirmed event keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        if self.capacity <= 0 or not isinstance(key, str):
            return False
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def seen(self, keys: Iterable[str]) -> set[str]:
        """The ``keys`` already here (each refreshed, as by ``in``), under one lock round."""
        if self.capacity <= 0:
            return set()
        found: set[str] = set()
        with self._lock:
            store = self._keys
            for key in keys:
                if key in store:
                    store.move_to_end(key)
                    found.add(key)
        return found

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        """Remember ``key``; the least recently seen key goes when full."""
        self.add_many((key,))

    def add_many(self, keys: Iterable[str]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            store = self._keys
            for key in keys:
                store[key] = None
                store.move_to_end(key)
            while len(store) > self.capacity:
                store.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)
