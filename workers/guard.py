"""The worker-side guard: a bridged task id runs once, even when the broker redelivers it.

This module owns :class:`WorkerGuard`: a done-marker per task id
(``<prefix>:task:done:<id>``) plus a short in-progress lock
(``<prefix>:task:lock:<id>``), each step one Lua script. The task ids are the
bridge's (:func:`ably_bridge.bridge.dedup.celery_task_id`), so a task the bridge
re-sent after a restart is recognised.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ably_bridge.bridge.redis_keys import keys_for

__all__ = ["WorkerGuard"]

logger = logging.getLogger(__name__)

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
        self._names = keys_for(client, prefix)
        self._done_ttl = max(1, int(done_ttl))
        self._lock_ms = max(1, int(lock_ttl * 1000))
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._token = uuid.uuid4().hex

    def _keys(self, task_id: str) -> tuple[str, str]:
        return self._names.task_done(task_id), self._names.task_lock(task_id)

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
