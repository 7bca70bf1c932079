"""Benchmark: ably.publish tasks per second through one worker process, against the emulator.

Starts the emulator in this process, a real ``celery -A workers worker`` subprocess
(threads pool, concurrency 1 and 8), enqueues N publishes with the producer
helper and times enqueue-to-last-result. Broker: Redis DB 14 (or --broker amqp).

    /work/.venv/bin/python bench/workers_publish.py --count 500 --broker redis
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from ably_bridge.emulator.server import Emulator  # noqa: E402
from workers import WorkerSettings, create_app, producers  # noqa: E402

BROKERS = {"redis": "redis://127.0.0.1:6379/14", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
BACKEND = "redis://127.0.0.1:6379/14"


def run(emu: Emulator, broker: str, concurrency: int, count: int) -> float:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ABLY_KEY": emu.root_key,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(emu.port),
        "ABLY_TLS": "false",
        "CELERY_BROKER_URL": BROKERS[broker],
        "CELERY_RESULT_BACKEND": BACKEND,
        "ABLY_WORKER_QUEUE": queue,
        "ABLY_WORKER_REDIS_KEY_PREFIX": f"{queue}:",
        "ABLY_WORKER_RESULT_EXPIRES": "300",
    }
    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen(
        [celery, "-A", "workers", "worker", "-P", "threads", "-c", str(concurrency),
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    settings = WorkerSettings(
        broker_url=BROKERS[broker],
        result_backend=BACKEND,
        queue=queue,
        redis_key_prefix=f"{queue}:",
        result_expires=300,
    )
    app = create_app("bench-producer", settings, register=False)
    try:
        producers.publish("bench-warmup", "w", "x", app=app).get(timeout=30)
        channel = f"bench-{queue}"
        start = time.perf_counter()
        receipts = [producers.publish(channel, "n", "x" * 100, app=app) for _ in range(count)]
        for receipt in receipts:
            receipt.get(timeout=120)
        elapsed = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(30)
        if broker == "amqp":
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        app.close()
        if broker == "redis":
            client = redis.Redis.from_url(BROKERS["redis"])
            for key in client.scan_iter(match=f"{queue}:*"):
                client.delete(key)
            client.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    args = parser.parse_args()
    with Emulator() as emu:
        for concurrency in (1, 8):
            rate = run(emu, args.broker, concurrency, args.count)
            print(f"broker={args.broker} concurrency={concurrency} count={args.count}: "
                  f"{rate:.0f} publish tasks/s")  # fmt: skip


if __name__ == "__main__":
    main()
