"""Consuming what the bridge delivers: the de-duplicating envelope task decorator.

This module owns :func:`envelope_task`, a decorator that turns
``handler(event)`` into a Celery task taking the envelope dict, and
:func:`event_key`. Decoding is :mod:`ably_bridge.envelope` (re-exported here:
:class:`BridgedEvent`, :func:`decode_envelope`, :func:`envelope_from_fields`
and the ``SOURCE_*`` names are the workers' public API).

De-duplication reuses the bridge's key scheme (:mod:`ably_bridge.bridge.dedup`):
an event's key is ``celery_task_id(ruleId, task name, dedup_key)`` - exactly the
task id the bridge's Celery sink gives that event - guarded by
:class:`~workers.guard.WorkerGuard`: a done mark
``<prefix>:task:done:<key>`` (``SET ... EX done_ttl``) and an in-progress lock
``<prefix>:task:lock:<key>`` (``SET NX PX lock_ttl``). So an event is handled
once whether the bridge re-sent it (same task id) or someone enqueued the same
envelope again (a new task id).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.envelope import (
    SOURCE_LIFECYCLE,
    SOURCE_MESSAGE,
    SOURCE_PRESENCE,
    BridgedEvent,
    decode_envelope,
    envelope_from_fields,
)
from workers.guard import WorkerGuard
from workers.settings import WorkerSettings

__all__ = [
    "SOURCE_LIFECYCLE",
    "SOURCE_MESSAGE",
    "SOURCE_PRESENCE",
    "BridgedEvent",
    "decode_envelope",
    "envelope_from_fields",
    "envelope_task",
    "event_key",
]

log = logging.getLogger(__name__)


def event_key(task_name: str, event: BridgedEvent) -> str:
    """The de-duplication key of ``event`` for ``task_name`` (the bridge's task id)."""
    return celery_task_id(event.rule_id, task_name, event.dedup_key)


class _GuardHolder:
    """A WorkerGuard made lazily in the process that uses it (after fork)."""

    def __init__(
        self,
        client: redis.Redis | None,
        url: str,
        prefix: str,
        done_ttl: float,
        lock_ttl: float,
    ) -> None:
        self._client = client
        self._url = url
        self._prefix = prefix
        self._done_ttl = done_ttl
        self._lock_ttl = lock_ttl
        self._guard: WorkerGuard | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerGuard:
        with self._lock:
            if self._guard is None:
                # redis://, redis+sentinel:// or redis+cluster:// (the guard's keys
                # carry hash tags on a cluster: ably_bridge.bridge.redis_keys).
                client = self._client or open_redis(
                    self._url, socket_timeout=10, socket_connect_timeout=10
                )
                self._guard = WorkerGuard(
                    client, prefix=self._prefix, done_ttl=self._done_ttl, lock_ttl=self._lock_ttl
                )
            return self._guard


Handler = Callable[[BridgedEvent], Any]


def envelope_task(
    app: Any,
    *,
    name: str | None = None,
    redis_client: redis.Redis | None = None,
    settings: WorkerSettings | None = None,
    lock_ttl: float = 300.0,
    busy_retry_delay: float = 5.0,
    **task_options: Any,
) -> Callable[[Handler], Any]:
    """Decorate ``handler(event)`` into a Celery task that takes a bridged envelope.

    The task decodes the envelope, calls ``handler`` once per event and skips
    events already handled (by this task name); an event being handled right
    now by another worker makes the task retry in ``busy_retry_delay``. The
    task returns ``{"handled": n, "skipped": m}``. ``task_options`` go to
    ``app.task`` (``acks_late`` defaults to True).
    """
    settings = settings or WorkerSettings.from_env()
    holder = _GuardHolder(
        redis_client, settings.dedup_url(), settings.dedup_prefix, settings.dedup_ttl, lock_ttl
    )
    task_options.setdefault("acks_late", True)
    task_options.setdefault("reject_on_worker_lost", True)

    def decorate(handler: Handler) -> Any:
        task_name = name or f"{handler.__module__}.{handler.__qualname__}"

        @app.task(name=task_name, bind=True, shared=False, **task_options)  # type: ignore[untyped-decorator]
        @functools.wraps(handler)
        def run(self: Any, envelope: dict[str, Any]) -> dict[str, int]:
            guard = holder.get()
            handled = skipped = 0
            for event in decode_envelope(envelope):
                key = event_key(task_name, event)
                state = guard.claim(key)
                if state == WorkerGuard.DONE:
                    skipped += 1
                    continue
                if state == WorkerGuard.BUSY:
                    raise self.retry(countdown=busy_retry_delay)
                try:
                    handler(event)
                except BaseException:
                    guard.release(key)
                    raise
                guard.complete(key)
                handled += 1
            if skipped:
                log.info("%s: skipped %d event(s) already handled", task_name, skipped)
            return {"handled": handled, "skipped": skipped}

        return run

    return decorate
