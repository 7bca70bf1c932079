"""Benchmark: the worker's CPU per task with the atomic Redis fetch and with kombu's own.

For each transport in turn (alternating, ``--rounds`` times): one ``celery``
worker subprocess (threads pool, ``--concurrency``) on the shared Redis (DB 14,
a private key prefix), ``--count`` fire-and-forget ``ably.publish`` tasks
enqueued first (a backlog: the fetch path the crash test exercises), then
drained into the emulator. Reported: the worker process's CPU time (user +
system, from /proc) per task while draining, and the drain rate. kombu's own
transport is selected with ``ABLY_BRIDGE_NO_SHORTCUTS=kombu.redis_atomic_fetch``.

    flock /work/wt/.bench.lock .venv/bin/python bench/redis_fetch.py --count 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from ably_bridge.emulator.server import Emulator  # noqa: E402
from bench.measure import cpu_seconds  # noqa: E402
from bench.workers_publish import stored  # noqa: E402
from workers import WorkerSettings, create_app, producers  # noqa: E402

BROKER = "redis://127.0.0.1:6379/14"
PATHS = {"atomic": {}, "kombu": {"ABLY_BRIDGE_NO_SHORTCUTS": "kombu.redis_atomic_fetch"}}


def one_run(emu: Emulator, path: str, count: int, concurrency: int) -> tuple[float, float]:
    queue = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "ABLY_BRIDGE_NO_SHORTCUTS"},
        **PATHS[path],
        "PYTHONPATH": str(ROOT),
        "ABLY_KEY": emu.root_key,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(emu.port),
        "ABLY_TLS": "false",
        "CELERY_BROKER_URL": BROKER,
        "CELERY_RESULT_BACKEND": "",
        "ABLY_WORKER_QUEUE": queue,
        "ABLY_WORKER_REDIS_KEY_PREFIX": f"{queue}:",
    }
    settings = WorkerSettings(broker_url=BROKER, result_backend=None, queue=queue,
                              redis_key_prefix=f"{queue}:")  # fmt: skip
    app = create_app("bench-fetch-producer", settings, register=False)
    channel = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    for _ in range(count):
        producers.publish(channel, "n", "x" * 100, app=app, ignore_result=True)
    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen(
        [celery, "-A", "workers", "worker", "-P", "threads", "-c", str(concurrency),
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while stored(emu, [channel]) == 0:  # started and fetching
            time.sleep(0.01)
        cpu0, t0, done0 = cpu_seconds(worker.pid), time.perf_counter(), stored(emu, [channel])
        while stored(emu, [channel]) < count:
            time.sleep(0.01)
        cpu, elapsed = cpu_seconds(worker.pid) - cpu0, time.perf_counter() - t0
        drained = count - done0
    finally:
        worker.terminate()
        worker.wait(60)
        app.close()
        client = redis.Redis.from_url(BROKER)
        for key in client.scan_iter(match=f"{queue}:*"):
            client.delete(key)
        client.close()
    return cpu / drained * 1e6, drained / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {p: [] for p in PATHS}
    with Emulator() as emu:
        for round_no in range(args.rounds):
            for path in PATHS:
                cpu, rate = one_run(emu, path, args.count, args.concurrency)
                results[path].append((cpu, rate))
                print(f"round {round_no + 1} {path:<7} {cpu:7.0f} us CPU/task {rate:7.0f} tasks/s",
                      flush=True)  # fmt: skip
    print(f"\ncount={args.count} rounds={args.rounds} concurrency={args.concurrency} (medians)")
    for path, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        print(f"{path:<7} {cpu:7.0f} us worker CPU per task {rate:7.0f} tasks/s")


if __name__ == "__main__":
    main()
