"""Exactly once across worker crashes: 5,000 publishes while workers are SIGKILLed.

The broker is a redis-server the test owns. 5,000 messages over 20 channels
are enqueued through a :class:`workers.coalesce.Coalescer` (at most 4 messages
a task, so about 1,250 ``acks_late`` tasks, fire-and-forget), every id fixed at
enqueue. While they flow, a seeded schedule SIGKILLs every 0.4-1.2 s (up to 8
kills):

* the whole worker (master and pool processes, its process group), which is
  started again at once: what it had fetched and not acked sits in the Redis
  transport's unacked index and is restored after the visibility timeout. With
  kombu's own transport a kill between ``BRPOP`` and the unacked write lost the
  message; :mod:`workers.redis_fetch` makes that move one step. Both pools.
* with the prefork pool, every other kill is one pool process: the master sees
  it die and re-queues the task it was running (``reject_on_worker_lost``).

Either way a publish Ably already accepted is sent again with the same ids.
Then every channel's history is read in full: each id enqueued is there exactly
once and nothing else is. That holds while a redelivered publish reaches Ably
within its idempotency window (2 minutes for Ably; the emulator remembers the
last 10,000 ids per channel): see docs/workers.md, "Exactly once".
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.emulator.server import Emulator
from tests.support.redis_server import PrivateRedis
from tests.workers.conftest import rest_client, unique
from tests.workers.owned import celery_worker
from workers import WorkerSettings, create_app
from workers.coalesce import Coalescer

TOTAL = 5_000
CHANNELS = 20
KILLS = 8


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _broker(server: PrivateRedis) -> str:
    """What the broker holds: queued, unacknowledged, and the restore lock."""
    client = redis.Redis.from_url(server.url)
    try:
        return (
            f"queued {client.llen('celery')}, unacked {client.hlen('unacked')}, "
            f"restore lock ttl {client.pttl('unacked_mutex')} ms"
        )
    finally:
        client.close()


def _ready(log: Path) -> int:
    """How many workers logged that they are ready."""
    return log.read_text(errors="replace").count(" ready.") if log.exists() else 0


def _history_ids(emulator: Emulator, key: str, channel: str) -> list[str]:
    with rest_client(emulator, key) as rest:
        return [str(m.id) for m in rest.channels.get(channel).history(limit=1000)]


def _stored(emulator: Emulator, app_id: str, channels: list[str]) -> int:
    def count() -> int:
        app = emulator.state.apps[app_id]
        return sum(len(app.channels[c].history) for c in channels if c in app.channels)

    return emulator.call(count)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigkilled_workers_publish_every_id_exactly_once(
    pool: str,
    durable_redis: PrivateRedis,
    emulator: Emulator,
    ably_app: dict[str, Any],
    tmp_path: Path,
) -> None:
    key = ably_app["root_key"]
    env = {
        "ABLY_KEY": key,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(emulator.port),
        "ABLY_TLS": "false",
        "CELERY_BROKER_URL": durable_redis.url,
        "CELERY_RESULT_BACKEND": "",
        "ABLY_WORKER_BROKER_TIMEOUT": "3",
        "ABLY_WORKER_VISIBILITY_TIMEOUT": "10",
        "ABLY_WORKER_RESTORE_INTERVAL": "0.5",
        "ABLY_WORKER_RETRY_BASE_DELAY": "0.05",
        "ABLY_WORKER_RETRY_MAX_DELAY": "0.5",
    }
    rng = random.Random(f"crash-{pool}")
    channels = [unique(f"crash{i}") for i in range(CHANNELS)]
    settings = WorkerSettings(broker_url=durable_redis.url, result_backend=None)
    producer = create_app(unique("producer"), settings, register=False)
    expected: dict[str, list[str]] = {c: [] for c in channels}
    kills: Counter[str] = Counter()
    stack = contextlib.ExitStack()
    log = tmp_path / "workers.log"

    starts = 0

    def start() -> subprocess.Popen[bytes]:
        nonlocal starts
        starts += 1
        name = unique(pool)
        return stack.enter_context(celery_worker(env, name, pool=pool, concurrency=4, log=log))

    with stack:
        worker = start()
        with Coalescer(producer, window=0.002, max_messages=4) as coalescer:
            for index in range(TOTAL):
                channel = channels[index % CHANNELS]
                receipt = coalescer.publish(channel, "n", f"m{index}")
                expected[channel].extend(receipt.message_ids)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(kills.values()) < KILLS:
            if _stored(emulator, ably_app["app_id"], channels) >= TOTAL:
                break
            time.sleep(rng.uniform(0.4, 1.2))
            children = _children(worker.pid)
            # (a pool process killed before its worker is ready makes Celery give up
            # starting - "Could not start worker processes" - so those wait for ready)
            ready = _ready(log) >= starts
            if pool == "prefork" and sum(kills.values()) % 2 and children and ready:
                os.kill(rng.choice(children), signal.SIGKILL)  # the master re-queues its task
                kills["child"] += 1
            else:
                os.killpg(worker.pid, signal.SIGKILL)  # master and pool: restored later
                worker.wait(10)
                kills["worker"] += 1
                worker = start()
        assert kills["worker"] >= 2, f"the publishes finished before the kills: {kills}"
        deadline = time.monotonic() + 90
        while _stored(emulator, ably_app["app_id"], channels) < TOTAL:
            if time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise AssertionError(
                    f"{_stored(emulator, ably_app['app_id'], channels)} of {TOTAL} messages "
                    f"after 90 s (kills: {dict(kills)}; {_broker(durable_redis)})\n{tail}"
                )
            time.sleep(0.5)
    producer.close()

    missing, duplicated, unexpected = 0, 0, 0
    for channel in channels:
        seen = Counter(_history_ids(emulator, key, channel))
        wanted = set(expected[channel])
        missing += sum(1 for i in wanted if seen[i] == 0)
        duplicated += sum(n - 1 for i, n in seen.items() if n > 1)
        unexpected += sum(1 for i in seen if i not in wanted)
    assert (missing, duplicated, unexpected) == (0, 0, 0), f"kills: {dict(kills)}"
    assert sum(len(ids) for ids in expected.values()) == TOTAL
