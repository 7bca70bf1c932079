"""The chaos run's Celery worker: each execution of ``chaos.record`` is written down.

Started by :mod:`tests.bridge.chaos.harness` as ``celery -A
tests.bridge.chaos.worker_app worker --pool solo`` (one task at a time, so the
order of executions is the order of the queue). Every execution appends one
JSON line - the task id and the event's channel, source and identity - to the
list ``chaos:executions`` of the results Redis (``CHAOS_RESULTS_URL``, a
server no fault touches). No guard: the checker counts raw executions (the
duplicates a worker without ``WorkerGuard`` would run) and de-duplicates by
task id itself.

The broker transport is the one :func:`workers.create_app` gives a Redis broker:
the atomic fetch of :mod:`workers.redis_fetch` (kombu's own with
``ABLY_BRIDGE_NO_SHORTCUTS=kombu.redis_atomic_fetch``). The visibility timeout
is an hour, so a message left in the unacked index is not redelivered within
the run: the report counts it (``celery_left_unacked``) instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

from workers.app import atomic_fetch_transport

app = Celery("ably-bridge-chaos", broker=os.environ["CHAOS_BROKER_URL"], set_as_current=True)
app.conf.update(
    result_backend=None,
    task_ignore_result=True,
    accept_content=["json"],
    task_default_queue="chaos",
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    worker_hijack_root_logger=False,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_transport_options={"visibility_timeout": 3600},
    # survives losing the broker while holding a message (Celery 5.7.0; workers.broker_loss)
    worker_consumer="workers.broker_loss:Consumer",
    broker_transport=atomic_fetch_transport(os.environ["CHAOS_BROKER_URL"]),
)
_results = redis.Redis.from_url(os.environ["CHAOS_RESULTS_URL"])


@app.task(name="chaos.record", bind=True)
def record(self: Any, envelope: dict[str, Any]) -> None:
    items = envelope.get("messages") or envelope.get("presence") or [{}]
    item = items[0]
    row = {
        "task": self.request.id,
        "channel": envelope.get("channel"),
        "source": envelope.get("source"),
        "id": item.get("id"),
        "data": item.get("data"),
        "action": item.get("action"),
        "clientId": item.get("clientId"),
    }
    _results.rpush("chaos:executions", json.dumps(row))
