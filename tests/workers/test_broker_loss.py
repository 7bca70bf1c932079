"""The worker survives a 20 s broker outage and consumes again, with both pools.

The broker is a redis-server this test owns (:class:`tests.support.redis_server.PrivateRedis`):
it is killed while the worker holds two unacknowledged messages - a publish with
a countdown (which a worker keeps unacked until its time comes) and a task that
is *running* (``tests.sleepy``, which ends during the outage) - stays down for
20 s, and starts again on the same port. The worker must stay alive through the
outage and after it (Celery 5.7.0 died with ``AttributeError ... 'hostname'``
twice over: closing the lost connection, and - threads pool - acking the task
that ended during the outage on its lost channel; see :mod:`workers.broker_loss`),
run a publish sent after the outage, the held publish must reach Ably exactly
once, and the running task is redelivered and runs once more to its end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.emulator.server import Emulator
from tests.support.redis_server import PrivateRedis
from tests.support.wait import eventually
from tests.workers.conftest import rest_client, unique
from tests.workers.owned import celery_worker
from workers import WorkerSettings, create_app, producers

OUTAGE = 20.0


def _env(emulator: Emulator, key: str, broker: str) -> dict[str, str]:
    return {
        "ABLY_KEY": key,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(emulator.port),
        "ABLY_TLS": "false",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "ABLY_WORKER_BROKER_TIMEOUT": "2",
        "ABLY_WORKER_VISIBILITY_TIMEOUT": "15",
        "ABLY_WORKER_RESTORE_INTERVAL": "1",
        "ABLY_WORKER_RETRY_BASE_DELAY": "0.05",
        "ABLY_WORKER_RETRY_MAX_DELAY": "0.5",
    }


def _history_ids(emulator: Emulator, key: str, channel: str) -> list[str]:
    with rest_client(emulator, key) as rest:
        return [str(m.id) for m in rest.channels.get(channel).history()]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_worker_survives_a_20s_broker_outage(
    pool: str,
    durable_redis: PrivateRedis,
    emulator: Emulator,
    ably_app: dict[str, Any],
    tmp_path: Path,
) -> None:
    key = ably_app["root_key"]
    settings = WorkerSettings(
        broker_url=durable_redis.url, result_backend=durable_redis.url, broker_timeout=2.0
    )
    log = tmp_path / "worker.log"
    env = _env(emulator, key, durable_redis.url)
    runs = tmp_path / "sleepy.txt"
    include = ("--include", "tests.workers.sleepy_task")
    with celery_worker(
        env, unique("loss"), pool=pool, concurrency=3, log=log, extra=include
    ) as worker:
        before = create_app(unique("before"), settings, register=False)
        try:
            first = producers.publish(unique("before"), "n", "before", app=before)
            assert first.get(timeout=60)["messageIds"] == first.message_ids
            held_channel = unique("held")
            held = producers.publish(held_channel, "n", "held", app=before, countdown=8)
            running = before.send_task("tests.sleepy", args=[str(runs), 4.0], ignore_result=True)
            broker = redis.Redis.from_url(durable_redis.url)
            eventually(
                lambda: (
                    _unacked_ids(broker) >= {held.task_id, running.id} and _lines(runs) == ["start"]
                ),
                30,
                "the worker to hold the countdown publish and run the sleepy task",
            )
            broker.close()
        finally:
            before.close()

        durable_redis.kill()
        outage_end = time.monotonic() + OUTAGE
        while time.monotonic() < outage_end:  # the outage itself: the worker must not exit
            assert worker.poll() is None, f"the worker exited during the outage:\n{_tail(log)}"
            time.sleep(0.5)
        durable_redis.start()

        after = create_app(unique("after"), settings, register=False)
        try:
            later = producers.publish(unique("after"), "n", "after", app=after)
            assert later.get(timeout=90)["messageIds"] == later.message_ids, _tail(log)
        finally:
            after.close()
        assert worker.poll() is None, _tail(log)
        eventually(
            lambda: _history_ids(emulator, key, held_channel) == held.message_ids,
            60,
            "the held publish to reach Ably once",
            interval=0.5,
        )
        # the task that was running is redelivered (its ack was impossible) and runs again
        eventually(lambda: _lines(runs)[-1:] == ["end"] and _lines(runs).count("start") == 2,
                   60, "the running task to be redelivered and end", interval=0.5)  # fmt: skip
        assert worker.poll() is None, _tail(log)
    assert "Unrecoverable error" not in log.read_text(errors="replace")


def _unacked_ids(broker: redis.Redis) -> set[str]:
    """The task ids of the messages in the Redis transport's unacked index."""
    return {json.loads(raw)[0]["headers"]["id"] for raw in broker.hvals("unacked")}


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
