"""A task name no worker registered is dead-lettered, not silently discarded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from tests.workers.conftest import REDIS_DB14, running_worker
from workers import WorkerSettings


def test_unknown_task_is_dead_lettered_with_its_envelope(
    make_settings: Callable[..., WorkerSettings], broker: str
) -> None:
    settings = make_settings(broker)
    stream = f"{settings.dedup_prefix}:deadletter"
    client = redis.Redis.from_url(REDIS_DB14, decode_responses=True)
    envelope = {"source": "channel.message", "channel": "orders", "ruleId": "r1", "messages": []}
    with running_worker(settings) as app:
        app.send_task("no.such.task", args=[envelope], task_id="tid-1", queue=settings.queue)
        deadline = time.monotonic() + 15
        while not client.xlen(stream):
            assert time.monotonic() < deadline, "no dead letter for the unknown task"
            time.sleep(0.05)
        # Read it before the fixture's clean-up removes the test's keys.
        ((_entry_id, fields),) = client.xrange(stream)
    assert fields["reason"] == "unknown_target"
    assert fields["code"] == "40400"
    assert "no.such.task" in fields["error"]
    assert (fields["channel"], fields["route"], fields["event_id"]) == ("orders", "r1", "tid-1")
    event: dict[str, Any] = json.loads(fields["event"])
    assert event["task"] == "no.such.task"
    assert event["body"][0][0] == envelope
    client.close()
