"""Benchmark: publishes per second through one Celery worker process, enqueue to confirmed publish.

Starts the emulator in this process and one ``celery`` worker subprocess
(threads pool, ``--concurrency``, app ``bench/workers_publish_app.py``), then
runs each mode in turn, ``--rounds`` times, all in one run:

* ``official+backend`` / ``official``: the baseline, a plain Celery task that
  publishes with the official ``ably`` sync REST client, one task per publish;
  with the result backend (the producer waits for every result) and without
  (``ignore_result``; confirmed when every message is in the channel);
* ``task+backend`` / ``task``: ``workers.producers.publish``, one ``ably.publish``
  task per publish, with results, then fire-and-forget;
* ``coalesced`` / ``coalesced-10ch``: :class:`workers.coalesce.Coalescer`
  (fire-and-forget, 5 ms window, up to 200 messages a task), on one channel
  and round-robin over 10 (batch publish); ``coalesced-max10``: at most 10
  messages a task.

"Confirmed" means Ably (the emulator) has stored the message: without a result
backend the bench counts the channel's messages in the emulator's state. Each
mode publishes ``--count`` 100-byte messages from one producer thread.

    .venv/bin/python bench/workers_publish.py --count 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from ably_bridge.emulator.server import Emulator  # noqa: E402
from workers import WorkerSettings, create_app, producers  # noqa: E402
from workers.coalesce import Coalescer  # noqa: E402

BROKERS = {"redis": "redis://127.0.0.1:6379/14", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
BACKEND = "redis://127.0.0.1:6379/14"
PAYLOAD = "x" * 100
MODES = [
    "official+backend",
    "official",
    "task+backend",
    "task",
    "coalesced",
    "coalesced-10ch",
    "coalesced-max10",
]


TASKS: dict[str, int] = {}  # tasks the coalescer sent in the last run of a mode


def stored(emu: Emulator, channels: list[str]) -> int:
    """How many messages the emulator holds on ``channels`` (its default app)."""

    def count() -> int:
        app = emu.state.apps[emu.app_id]
        return sum(len(app.channels[c].history) for c in channels if c in app.channels)

    return emu.call(count)


def wait_stored(emu: Emulator, channels: list[str], count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while stored(emu, channels) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored(emu, channels)} of {count} messages arrived")
        time.sleep(0.005)


def run_mode(mode: str, emu: Emulator, app: Any, count: int) -> float:
    tag = uuid.uuid4().hex[:8]
    channels = [f"bench-{tag}-{i}" for i in range(10 if mode.endswith("10ch") else 1)]
    start = time.perf_counter()
    if mode.startswith("official"):
        backend = mode.endswith("+backend")
        results = [
            app.send_task(
                "bench.official_publish",
                args=(channels[0], "n", PAYLOAD),
                ignore_result=not backend,
            )
            for _ in range(count)
        ]
        if backend:
            for result in results:
                result.get(timeout=300)
        else:
            wait_stored(emu, channels, count)
    elif mode.startswith("task"):
        backend = mode.endswith("+backend")
        receipts = [
            producers.publish(channels[0], "n", PAYLOAD, app=app, ignore_result=not backend)
            for _ in range(count)
        ]
        if backend:
            for receipt in receipts:
                receipt.get(timeout=300)
        else:
            wait_stored(emu, channels, count)
    else:
        limit = {"max_messages": 10} if mode.endswith("max10") else {}
        with Coalescer(app, **limit) as coalescer:
            for i in range(count):
                coalescer.publish(channels[i % len(channels)], "n", PAYLOAD)
        wait_stored(emu, channels, count)
        TASKS[mode] = coalescer.tasks_sent
    elapsed = time.perf_counter() - start
    if stored(emu, channels) != count:
        raise RuntimeError(f"{mode}: {stored(emu, channels)} stored, {count} expected")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = args.modes.split(",")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    rates: dict[str, list[float]] = {m: [] for m in modes}
    with Emulator() as emu:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ABLY_KEY": emu.root_key,
            "ABLY_ENDPOINT": "127.0.0.1",
            "ABLY_PORT": str(emu.port),
            "ABLY_TLS": "false",
            "CELERY_BROKER_URL": BROKERS[args.broker],
            "CELERY_RESULT_BACKEND": BACKEND,
            "ABLY_WORKER_QUEUE": queue,
            "ABLY_WORKER_REDIS_KEY_PREFIX": f"{queue}:",
            "ABLY_WORKER_RESULT_EXPIRES": "300",
        }
        celery = str(Path(sys.executable).with_name("celery"))
        worker = subprocess.Popen(
            [celery, "-A", "bench.workers_publish_app", "worker", "-P", "threads",
             "-c", str(args.concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "WARNING"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        settings = WorkerSettings(
            broker_url=BROKERS[args.broker],
            result_backend=BACKEND,
            queue=queue,
            redis_key_prefix=f"{queue}:",
            result_expires=300,
        )
        app = create_app("bench-producer", settings, register=False)
        try:
            producers.publish("bench-warmup", "w", "x", app=app).get(timeout=60)
            app.send_task("bench.official_publish", args=("bench-warmup", "w", "x")).get(60)
            for round_no in range(args.rounds):
                for mode in modes:
                    rate = run_mode(mode, emu, app, args.count)
                    rates[mode].append(rate)
                    print(f"round {round_no + 1} {mode:<17} {rate:8.0f} publishes/s", flush=True)
        finally:
            worker.terminate()
            worker.wait(60)
            cleanup(app, args.broker, queue)
    report(rates, args)


def cleanup(app: Any, broker: str, queue: str) -> None:
    if broker == "amqp":
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    app.close()
    if broker == "redis":
        client = redis.Redis.from_url(BROKERS["redis"])
        for key in client.scan_iter(match=f"{queue}:*"):
            client.delete(key)
        client.close()


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    pick: Callable[[list[float]], float] = statistics.median
    base = {
        True: pick(rates["official+backend"]) if rates.get("official+backend") else None,
        False: pick(rates["official"]) if rates.get("official") else None,
    }
    print(
        f"\nbroker={args.broker} concurrency={args.concurrency} count={args.count} "
        f"rounds={args.rounds} (median publishes/s; x = vs the official-SDK task, same backend)"
    )
    for mode, values in rates.items():
        if not values:
            continue
        reference = base[mode.endswith("+backend")]
        ratio = f"{pick(values) / reference:5.1f}x" if reference else "    -"
        spread = f"{min(values):.0f}-{max(values):.0f}"
        per_task = f"  {args.count / TASKS[mode]:.0f} msg/task" if mode in TASKS else ""
        print(f"  {mode:<17} {pick(values):8.0f}  ({spread})  {ratio}{per_task}")


if __name__ == "__main__":
    main()
