"""The workers on a Celery broker behind Sentinel (issue 21), through a failover.

The test starts its own group (:mod:`tests.support.sentinel`: a primary, a
replica, three Sentinels) and a threads-pool worker with
``CELERY_BROKER_URL=sentinel://...;sentinel://...;sentinel://.../0`` and
``ABLY_WORKER_SENTINEL_MASTER``.
100 publishes are enqueued, each with a fixed message id: 50 before the
primary is SIGKILLed, 50 while the Sentinels promote the replica (an enqueue
the broker refuses meanwhile is sent again with the same id). Before the kill
the test waits until the replica has everything written so far (``WAIT``):
Redis replicates asynchronously, and what a primary had not replicated when it
died is gone with it (docs/workers.md, *Sentinel*). Then every id is in the
channel's history exactly once: the worker followed the failover by itself,
and a message whose fetch or ack the old primary took with it was run again
and absorbed by Ably's idempotent publish.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.emulator.server import Emulator
from tests.support.sentinel import SERVICE, WAIT, sentinel_group
from tests.support.wait import eventually
from tests.workers.conftest import rest_client, unique
from tests.workers.owned import celery_worker
from workers import WorkerSettings, create_app, producers
from workers.app import atomic_fetch_transport

TOTAL = 100


def _history_ids(emulator: Emulator, key: str, channel: str) -> list[str]:
    with rest_client(emulator, key) as rest:
        return [str(m.id) for m in rest.channels.get(channel).history(limit=1000)]


@pytest.mark.slow
def test_workers_follow_a_sentinel_failover_and_lose_no_task(
    tmp_path: Path, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    key = ably_app["root_key"]
    channel = unique("sentinel")
    log = tmp_path / "worker.log"
    with sentinel_group(tmp_path) as group:
        url = group.kombu_url()
        env = {
            "ABLY_KEY": key,
            "ABLY_ENDPOINT": "127.0.0.1",
            "ABLY_PORT": str(emulator.port),
            "ABLY_TLS": "false",
            "CELERY_BROKER_URL": url,
            "ABLY_WORKER_SENTINEL_MASTER": SERVICE,
            "CELERY_RESULT_BACKEND": "",
            "ABLY_WORKER_BROKER_TIMEOUT": "2",
            "ABLY_WORKER_VISIBILITY_TIMEOUT": "10",
            "ABLY_WORKER_RESTORE_INTERVAL": "0.5",
            "ABLY_WORKER_RETRY_BASE_DELAY": "0.05",
            "ABLY_WORKER_RETRY_MAX_DELAY": "0.5",
        }
        settings = WorkerSettings(
            broker_url=url, result_backend=None, broker_timeout=2.0, sentinel_master=SERVICE
        )
        producer = create_app(unique("sentinel-producer"), settings, register=False)
        assert producer.conf.broker_transport == atomic_fetch_transport(url)
        assert producer.conf.broker_transport_options["master_name"] == SERVICE

        def enqueue(index: int) -> None:
            def attempt() -> bool:
                with contextlib.suppress(Exception):  # the broker is failing over: again
                    producers.publish(channel, "n", f"m{index}", message_id=f"{channel}:{index}",
                                      app=producer, ignore_result=True)  # fmt: skip
                    return True
                return False

            eventually(attempt, WAIT, f"publish {index} to be enqueued", interval=0.2)

        try:
            with celery_worker(env, unique("sentinel"), pool="threads", concurrency=4, log=log):
                for index in range(TOTAL // 2):
                    enqueue(index)
                eventually(lambda: len(_history_ids(emulator, key, channel)) >= 10, WAIT,
                           "the worker to consume", interval=0.2)  # fmt: skip
                primary = redis.Redis(port=group.primary, socket_timeout=5)
                primary.set("replicated-up-to-here", "1")  # WAIT covers every write before it
                assert primary.execute_command("WAIT", 1, 5000) == 1
                primary.close()
                group.procs[group.primary].send_signal(signal.SIGKILL)
                for index in range(TOTAL // 2, TOTAL):
                    enqueue(index)
                assert group.current_primary() == group.replica
                eventually(lambda: len(set(_history_ids(emulator, key, channel))) >= TOTAL,
                           60, "every publish in history", interval=0.5)  # fmt: skip
        except AssertionError as exc:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise AssertionError(f"{exc}\n{tail}") from None
        finally:
            producer.close()
    seen = Counter(_history_ids(emulator, key, channel))
    wanted = {f"{channel}:{i}" for i in range(TOTAL)}
    assert set(seen) == wanted and max(seen.values()) == 1
