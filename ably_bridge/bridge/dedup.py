"""De-duplication: the key scheme shared by the bridge and workers, and the guards.

This module owns how an event is recognised as already delivered:

* :func:`stream_dedup_keys` / :func:`stream_dedup_field` - the per-stream,
  time-bucketed hashes the Redis Streams Lua script checks and marks in the
  same atomic step as its ``XADD``. A mark lives between ``ttl`` and ``2 * ttl``
  seconds (the current and the previous bucket are checked).
* :func:`celery_task_id` - the deterministic Celery task id of an event for one
  route and task, so a re-sent event carries the same id.
* :class:`WorkerGuard` - the worker-side guard that makes a redelivered task run
  once: a done-marker per task id plus a short in-progress lock.
* :class:`DedupWindow` - a bounded in-memory LRU of recently *confirmed* events,
  so the hot path skips obvious replays (history overlap after a reattach)
  without a Redis round trip. Only add keys after every target confirmed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

__all__ = [
    "TASK_ID_NAMESPACE",
    "DedupWindow",
    "WorkerGuard",
    "celery_task_id",
    "dedup_bucket",
    "stream_dedup_field",
    "stream_dedup_keys",
]

logger = logging.getLogger(__name__)

# uuid5 namespace of bridge task ids (a fixed, random UUID: never change it, or
# events re-sent after an upgrade would get new ids).
TASK_ID_NAMESPACE = uuid.UUID("6f1d2b8e-3c4a-5e9f-8a7b-2d1c0e9f8a6b")
_TASK_ID_PREFIX = TASK_ID_NAMESPACE.bytes


def dedup_bucket(now: float, ttl: float) -> int:
    """The time bucket (``ttl`` seconds wide) that ``now`` falls in."""
    return int(now // ttl)


def stream_dedup_keys(prefix: str, stream: str, now: float, ttl: float) -> tuple[str, str]:
    """The (current, previous) dedup hash keys of ``stream`` at time ``now``."""
    bucket = dedup_bucket(now, ttl)
    base = f"{prefix}:dedup:{stream}:"
    return f"{base}{bucket}", f"{base}{bucket - 1}"


def stream_dedup_field(route_id: str, dedup_key: str) -> str:
    """The hash field marking one event of one route (``Envelope.dedup_key``)."""
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


# KEYS[1] = done marker, KEYS[2] = in-progress lock; ARGV[1] = lock ttl (ms), ARGV[2] = token.
# Returns 1 = run it, 0 = already done, -1 = running elsewhere.
_CLAIM_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then return 1 end
return -1
"""

# KEYS[1] = done marker, KEYS[2] = lock; ARGV[1] = done ttl (s), ARGV[2] = token.
_COMPLETE_LUA = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS[1] = lock; ARGV[1] = token.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WorkerGuard:
    """Runs each bridged task id once, even when the broker redelivers it.

    Use in a task body::

        guard = WorkerGuard(redis.Redis.from_url(url))

        @app.task(bind=True, name="chat.handle")
        def handle(self, envelope):
            with guard.once(self.request.id) as first:
                if first:
                    process(envelope)

    A done-marker (``done_ttl``) records success; an in-progress lock
    (``lock_ttl``) keeps a concurrent redelivery from running alongside and
    expires if the worker dies, so a later redelivery can run it.
    """

    CLAIMED = 1
    DONE = 0
    BUSY = -1

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ably-bridge",
        done_ttl: float = 7 * 24 * 3600,
        lock_ttl: float = 300.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._done_ttl = max(1, int(done_ttl))
        self._lock_ms = max(1, int(lock_ttl * 1000))
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._token = uuid.uuid4().hex

    def _keys(self, task_id: str) -> tuple[str, str]:
        return f"{self._prefix}:task:done:{task_id}", f"{self._prefix}:task:lock:{task_id}"

    def claim(self, task_id: str) -> int:
        """:attr:`CLAIMED` (run it), :attr:`DONE` or :attr:`BUSY` (running elsewhere)."""
        done, lock = self._keys(task_id)
        return int(self._claim(keys=[done, lock], args=[self._lock_ms, self._token]))

    def complete(self, task_id: str) -> None:
        """Mark ``task_id`` done and drop its lock."""
        done, lock = self._keys(task_id)
        self._complete(keys=[done, lock], args=[self._done_ttl, self._token])

    def release(self, task_id: str) -> None:
        """Drop the lock without marking done (the task failed; a retry may run it)."""
        _, lock = self._keys(task_id)
        self._release(keys=[lock], args=[self._token])

    def is_done(self, task_id: str) -> bool:
        done, _ = self._keys(task_id)
        return bool(self._client.exists(done))

    @contextmanager
    def once(self, task_id: str) -> Iterator[bool]:
        """Yield True if this call should do the work; mark done on a clean exit."""
        state = self.claim(task_id)
        if state != self.CLAIMED:
            logger.info("skipping task %s: %s", task_id, "done" if state == self.DONE else "busy")
            yield False
            return
        try:
            yield True
        except BaseException:
            self.release(task_id)
            raise
        self.complete(task_id)
