"""Baseline: a plain ``send_task`` loop, and the broker's own cost and ceiling per task.

Default mode: one process sends ``--tasks`` tasks by name (``bench.count``) with
one argument, an envelope dict shaped like the bridge's (100-character
payload), to a fresh queue on the broker, one ``app.send_task`` call per task,
and reports tasks/s, CPU microseconds per task (``time.process_time``), the
broker's CPU per task (``redis-server`` / RabbitMQ's ``beam.smp`` from
``/proc``, when visible) and the time of one ``send_task`` call (p50/p99: with
``--confirm`` that is one publisher-confirm round trip). No worker runs: the
figure is "accepted by the broker" (with publisher confirms on AMQP when
``--confirm``, as the bridge uses). The queue is deleted afterwards.

``--pipelined`` (AMQP): the broker's ceiling for the same task messages. One
message is built by Celery; copies with fresh ids are published with py-amqp,
``--batch`` at a time written in one go, then the batch's publisher confirms
awaited - so the client costs little and the broker is what is measured.
With ``--rate`` the copies are published one at a time at that pace instead,
and the report is the publish -> confirm latency (p50/p99/max).

Broker-side options (AMQP): ``--transient`` (delivery mode 1 instead of
persistent) and ``--queue-arguments JSON`` (the queue is declared with them,
e.g. ``'{"x-queue-mode": "lazy"}'`` or ``'{"x-queue-version": 2}'``; in
production a RabbitMQ policy sets the same without changing declarations).

    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker redis
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp --confirm
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp --confirm --pipelined
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp --confirm \\
        --pipelined --queue-arguments '{"x-queue-mode": "lazy"}'
    /work/.venv/bin/python bench/celery_send_task_baseline.py --broker amqp --confirm \\
        --pipelined --rate 2000 --tasks 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue
from measure import cpu_seconds as _proc_cpu_seconds  # (bench/ is first on sys.path)

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


def broker_pid(broker: str) -> int | None:
    """The local broker process (``beam.smp`` or ``redis-server``), if visible."""
    needle = b"beam.smp" if broker == "amqp" else b"redis-server"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def cpu_seconds(pid: int | None) -> float:
    return 0.0 if pid is None else _proc_cpu_seconds(pid)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    n = len(ordered)
    return {
        "p50_ms": round(ordered[n // 2], 2),
        "p99_ms": round(ordered[min(n - 1, int(n * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def make_app(url: str, confirm: bool) -> Celery:
    app = Celery("baseline", broker=url, set_as_current=False)
    options: dict[str, Any] = {}
    if confirm and url.startswith("amqp"):
        options["confirm_publish"] = True
    app.conf.update(
        task_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        broker_transport_options=options,
    )
    return app


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = REDIS_URL if args.broker == "redis" else AMQP_URL
    app = make_app(url, args.confirm)
    name = f"baseline-{os.getpid()}"
    queue = Queue(name, queue_arguments=args.queue_arguments or None)
    delivery_mode = 1 if args.transient else 2
    for i in range(200):  # warm-up: connection, declarations
        app.send_task("bench.count", args=(envelope(i),), queue=queue, delivery_mode=delivery_mode)
    server = broker_pid(args.broker)
    server0, cpu0, t0 = cpu_seconds(server), time.process_time(), time.perf_counter()
    result: dict[str, Any] = {
        "broker": args.broker,
        "mode": "pipelined" if args.pipelined else "send_task",
        "confirm": args.confirm and args.broker == "amqp",
        "persistent": not args.transient,
        "queue_arguments": args.queue_arguments,
        "tasks": args.tasks,
    }
    if args.pipelined:
        latencies = pipelined(app, name, args, delivery_mode)
    else:
        latencies = []
        for i in range(args.tasks):
            started = time.perf_counter()
            app.send_task(
                "bench.count", args=(envelope(i),), queue=queue, task_id=str(uuid.uuid4()),
                delivery_mode=delivery_mode,
            )  # fmt: skip
            latencies.append((time.perf_counter() - started) * 1000)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        if args.broker == "amqp":
            _, count, _ = channel.queue_declare(name, passive=True)
        else:
            count = channel.client.llen(name)
        server_cpu = cpu_seconds(server) - server0
        channel.queue_delete(name)
    app.close()
    result.update(
        in_queue=int(count) - 200,
        tasks_per_s=round(args.tasks / elapsed),
        cpu_us_per_task=round(cpu / args.tasks * 1e6, 1),
    )
    if server is not None:
        result["broker_cpu_us_per_task"] = round(server_cpu / args.tasks * 1e6, 1)
    if latencies:
        result.update(quantiles(latencies))
    return result


def pipelined(app: Celery, queue: str, args: argparse.Namespace, mode: int) -> list[float]:
    """Publish copies of one Celery task message with py-amqp; the confirm latencies with
    ``--rate``, else nothing (batches of ``--batch``, frames written together)."""
    import amqp
    from amqp.method_framing import frame_writer

    if args.broker != "amqp":
        raise SystemExit("--pipelined is for --broker amqp")
    headers, properties, body, _ = app.amqp.create_task_message(
        str(uuid.uuid4()), "bench.count", (envelope(0),), {}
    )
    payload = json.dumps(body).encode()
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    channel = conn.channel()
    channel.queue_declare(
        queue, durable=True, auto_delete=False, arguments=args.queue_arguments or None
    )
    confirm = args.confirm
    acked = [0]
    sent: dict[int, float] = {}
    latencies: list[float] = []

    def on_ack(tag: int, multiple: bool) -> None:
        now = time.perf_counter()
        for t in range(acked[0] + 1, tag + 1) if multiple else (tag,):
            if t in sent:
                latencies.append((now - sent.pop(t)) * 1000)
        acked[0] = max(acked[0], tag)

    if confirm:
        channel.confirm_select()
        channel.events["basic_ack"].add(on_ack)

    def message() -> Any:
        task_id = str(uuid.uuid4())
        return amqp.Message(
            payload, content_type="application/json", content_encoding="utf-8",
            application_headers=dict(headers, id=task_id, root_id=task_id),
            delivery_mode=mode, priority=0, correlation_id=task_id,
            reply_to=properties["reply_to"],
        )  # fmt: skip

    class Frames:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, s: Any) -> None:
            self.data += s

    done = 0
    started = time.perf_counter()
    while done < args.tasks:
        if args.rate > 0:  # paced, one at a time; acks read while waiting
            due = started + done / args.rate
            while time.perf_counter() < due:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=max(0.0001, due - time.perf_counter()))
            done += 1
            sent[done] = time.perf_counter()
            channel._basic_publish(message(), exchange="", routing_key=queue)
            continue
        n = min(args.batch, args.tasks - done)
        frames, real = Frames(), conn.frame_writer
        conn.frame_writer = frame_writer(conn, frames)
        try:
            for _ in range(n):
                channel._basic_publish(message(), exchange="", routing_key=queue)
        finally:
            conn.frame_writer = real
        conn.transport.write(bytes(frames.data))
        done += n
        while confirm and acked[0] < done:
            conn.drain_events(timeout=10)
    while confirm and acked[0] < done:
        conn.drain_events(timeout=10)
    conn.close()
    return latencies if args.rate > 0 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--confirm", action="store_true", help="AMQP publisher confirms")
    parser.add_argument(
        "--pipelined", action="store_true", help="AMQP: the broker's ceiling (see above)"
    )
    parser.add_argument("--batch", type=int, default=500, help="--pipelined: tasks per write")
    parser.add_argument("--rate", type=float, default=0.0, help="--pipelined: paced tasks/s")
    parser.add_argument("--transient", action="store_true", help="delivery mode 1")
    parser.add_argument(
        "--queue-arguments", type=json.loads, default={}, help="AMQP queue arguments (JSON)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
