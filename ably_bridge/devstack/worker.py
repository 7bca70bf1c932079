"""The dev stack's Celery app and its task ``dev.chat_event``.

Run by ``ably-bridge dev`` as ``celery -A ably_bridge.devstack.worker worker``.

The bridge of ``ably-bridge dev`` sends every ``chat:*`` event to the task
``dev.chat_event`` (by name, on the run's queue). The task is a
:func:`workers.envelope_task`, so it is de-duplicated per event exactly as a
real worker's would be; for each event it records, in the run's Redis
(:class:`~ably_bridge.devstack.layout.DevLayout`), a count per source
(``<prefix>:dev:tasks``) and the event id (``<prefix>:dev:handled``), which
is how the live summary and the tests see that tasks ran.

Configuration is the environment the dev command gives the worker:
``CELERY_BROKER_URL``, ``ABLY_WORKER_QUEUE``, ``ABLY_WORKER_DEDUP_*`` (see
:mod:`workers.app`) and ``ABLY_DEV_REDIS_URL``/``ABLY_DEV_PREFIX``. When
Celery reports the worker ready, the module sets ``<prefix>:dev:worker-ready``.

To react to chat events yourself, copy this module (or
``examples/chat_worker.py``) and put your logic in the handler.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery.signals import worker_ready

from ably_bridge import PresenceAction
from ably_bridge.devstack.layout import TASK_NAME, DevLayout
from workers import create_app, envelope_task
from workers.consumers import SOURCE_PRESENCE, BridgedEvent

__all__ = ["app", "chat_event", "layout"]

log = logging.getLogger(__name__)

layout = DevLayout.from_worker_env()

app = create_app("ably-dev", register=False)
app.conf.update(worker_enable_remote_control=False, worker_send_task_events=False)

_client_lock = threading.Lock()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                layout.data_url, socket_timeout=10, socket_connect_timeout=10
            )
        return _client


def record(event: BridgedEvent, client: redis.Redis | None = None) -> None:
    """Count ``event`` and remember its id in the run's Redis."""
    pipe = (client or _redis()).pipeline(transaction=False)
    pipe.hincrby(layout.tasks_key, event.short_source, 1)
    pipe.sadd(layout.handled_key, event.event_id)
    pipe.execute()


def _chat_event(event: BridgedEvent) -> None:
    """Handle one bridged chat event: record it and log one line."""
    record(event)
    if event.source == SOURCE_PRESENCE and event.action is not None:
        what = PresenceAction(event.action).name.lower()
    else:
        what = str(event.name)
    log.info(
        "%s %s on %s from %s: %s", event.short_source, event.id, event.channel,
        event.client_id or "-", what,
    )  # fmt: skip


chat_event: Any = envelope_task(app, name=TASK_NAME)(_chat_event)


def _on_worker_ready(**_: Any) -> None:
    try:
        _redis().set(layout.worker_ready_key, str(os.getpid()), ex=24 * 3600)
    except redis.RedisError as exc:
        log.warning("could not mark the dev worker ready: %s", exc)


worker_ready.connect(_on_worker_ready, weak=False)
