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

With ``ably-bridge dev --handler MODULE:FUNCTION`` (``ABLY_DEV_HANDLER`` in
this worker's environment) the task also calls your function with each
:class:`~workers.consumers.BridgedEvent` (:mod:`ably_bridge.devstack.handler`)
and stores what it printed, returned or raised under the event id in
``<prefix>:dev:results``, which the dev console prints. In production the same
function becomes a task with :func:`workers.envelope_task` (README: "Your own
handler").
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery.signals import worker_ready

from ably_bridge import PresenceAction
from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.devstack.handler import ENV_HANDLER, HandlerResult, call_handler, load_handler
from ably_bridge.devstack.layout import TASK_NAME, DevLayout
from workers import create_app, envelope_task, set_default_app
from workers.consumers import SOURCE_PRESENCE, BridgedEvent

__all__ = ["app", "chat_event", "layout"]

log = logging.getLogger(__name__)

layout = DevLayout.from_worker_env()
handler_spec = os.environ.get(ENV_HANDLER) or None
user_handler: Callable[[Any], Any] | None = (
    load_handler(handler_spec, Path(os.environ.get("ABLY_DEV_HANDLER_BASE") or os.getcwd()))
    if handler_spec
    else None
)

# The ably.* tasks are registered too, so a handler (or a producer) may publish back
# with workers.producers; this app is the one they use by default.
app = create_app("ably-dev")
set_default_app(app)
app.conf.update(worker_enable_remote_control=False, worker_send_task_events=False)

_client_lock = threading.Lock()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            # a RedisCluster on redis+cluster:// (record's pipeline is split per node)
            _client = open_redis(layout.data_url, socket_timeout=10, socket_connect_timeout=10)
        return _client


def record(
    event: BridgedEvent,
    client: redis.Redis | None = None,
    result: HandlerResult | None = None,
    *,
    layout: DevLayout = layout,
) -> None:
    """Count ``event``, remember its id and what the task did with it in the run's Redis."""
    result = result or HandlerResult(TASK_NAME)
    pipe = (client or _redis()).pipeline(transaction=False)
    pipe.hset(layout.results_key, event.event_id, json.dumps(result.as_dict()))
    pipe.hincrby(layout.tasks_key, event.short_source, 1)
    pipe.sadd(layout.handled_key, event.event_id)
    pipe.execute()


def _chat_event(event: BridgedEvent) -> None:
    """Handle one bridged chat event: call the user's handler if any, record it, log one line."""
    result = None
    if user_handler is not None and handler_spec is not None:
        result = call_handler(handler_spec, user_handler, event)
    record(event, result=result)
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
