"""Baseline: a plain ``send_task`` loop, the figure the bridge's Celery path is compared with.

One process sends ``--tasks`` tasks by name (``bench.count``) with one argument,
an envelope dict shaped like the bridge's (100-character payload), to a fresh
queue on the broker, one ``app.send_task`` call per task, and reports tasks/s
and CPU microseconds per task (``time.process_time``). No worker runs: the
figure is "accepted by the broker" (with publisher confirms on AMQP when
``--confirm``, as the bridge uses). The queue is deleted afterwards.

    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker redis
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp --confirm
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def envelope(i: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "source": "channel.message",
        "appId": "bench",
        "channel": "bench-0",
        "site": "bench",
        "ruleId": "bench",
        "timestamp": now,
        "messages": [
            {
                "id": f"conn:{i}:0",
                "name": "m",
                "connectionId": "conn",
                "timestamp": now,
                "data": "x" * 100,
            }
        ],
    }


def run(broker: str, tasks: int, confirm: bool) -> dict[str, Any]:
    url = REDIS_URL if broker == "redis" else AMQP_URL
    app = Celery("baseline", broker=url, set_as_current=False)
    options: dict[str, Any] = {}
    if confirm and broker == "amqp":
        options["confirm_publish"] = True
    app.conf.update(
        task_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        broker_transport_options=options,
    )
    queue = f"baseline-{os.getpid()}"
    for i in range(200):  # warm-up: connection, declarations
        app.send_task("bench.count", args=(envelope(i),), queue=queue)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(tasks):
        app.send_task("bench.count", args=(envelope(i),), queue=queue, task_id=str(uuid.uuid4()))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        if broker == "amqp":
            _, count, _ = channel.queue_declare(queue, passive=True)
        else:
            count = channel.client.llen(queue)
        channel.queue_delete(queue)
    app.close()
    return {
        "broker": broker,
        "confirm": confirm and broker == "amqp",
        "tasks": tasks,
        "in_queue": int(count) - 200,
        "tasks_per_s": round(tasks / elapsed),
        "cpu_us_per_task": round(cpu / tasks * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--confirm", action="store_true", help="AMQP publisher confirms")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.broker, args.tasks, args.confirm)
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
