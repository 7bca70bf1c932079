"""Benchmark of the realtime client's inbound path, against the emulator in another process.

Run: ``/work/.venv/bin/python bench/realtime_inbound.py`` (``--format json`` to
compare, ``--messages``, ``--channels``). Three measurements, each printed:

1. **Inbound throughput**: a publisher process floods one channel (batches of
   ``--batch`` messages per ProtocolMessage); this process's ``AblyRealtime``
   counts messages in a listener. Prints messages/s (first to last delivery)
   and CPU per message (``time.process_time`` of this process, every thread).
2. **Latency**: the publisher sends single messages at ``--rate`` per second
   stamped with ``time.monotonic_ns()`` (system-wide on Linux, so comparable
   across processes); prints p50/p99 publish->callback in ms.
3. **Memory per attached channel**: attaches ``--channels`` channels and
   prints the growth of resident memory (``/proc/self/statm``) and of the
   Python heap (``tracemalloc``) per channel. Target: under 10 KB.

The emulator and the publisher run in their own processes so that their CPU
is not charged to the client.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

from ably_bridge.protocol.models import Message
from ably_bridge.realtime import AblyRealtime


def _emulator_main(pipe: Connection) -> None:
    from ably_bridge.emulator import Emulator

    with Emulator() as emu:
        pipe.send((emu.host, emu.port, emu.root_key))
        pipe.recv()  # until told to stop


def _client(host: str, port: int, key: str, fmt: str, **extra: Any) -> AblyRealtime:
    return AblyRealtime(
        key=key,
        endpoint=host,
        port=port,
        tls=False,
        use_binary_protocol=fmt == "msgpack",
        auto_connect=False,
        **extra,
    )


def _publisher_main(pipe: Connection, host: str, port: int, key: str, fmt: str) -> None:
    client = _client(host, port, key, fmt)
    client.connect(timeout=10)
    while True:
        command = pipe.recv()
        if command is None:
            break
        kind, channel_name, count, size, knob = command
        channel = client.channels.get(channel_name)
        if kind == "flood":
            payload = "x" * size
            per_frame = int(knob)
            window = threading.BoundedSemaphore(64)  # ProtocolMessages in flight
            for start in range(0, count, per_frame):
                batch = [Message("m", payload) for _ in range(min(per_frame, count - start))]
                window.acquire()
                channel.publish_async(batch, callback=lambda _e, w=window: w.release())
            for _ in range(64):
                window.acquire()
        else:  # paced, stamped
            rate = float(knob)
            start = time.monotonic()
            for i in range(count):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                channel.publish_async("t", str(time.monotonic_ns()))
        pipe.send("done")
    client.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_throughput(
    sub: AblyRealtime, pub: Connection, count: int, batch: int, size: int
) -> dict[str, float]:
    channel = sub.channels.get("flood")
    received = 0
    first = last = 0.0
    done = threading.Event()

    def listener(_message: Message) -> None:
        nonlocal received, first, last
        if received == 0:
            first = time.perf_counter()
        received += 1
        if received == count:
            last = time.perf_counter()
            done.set()

    channel.subscribe(listener)
    channel.attach()
    cpu0 = time.process_time()
    pub.send(("flood", "flood", count, size, batch))
    if not done.wait(300):
        raise RuntimeError(f"received only {received} of {count}")
    cpu = time.process_time() - cpu0
    pub.recv()
    elapsed = last - first
    return {
        "messages": count,
        "msg_per_s": count / elapsed if elapsed > 0 else float("inf"),
        "cpu_us_per_msg": cpu / count * 1e6,
    }


def bench_latency(sub: AblyRealtime, pub: Connection, count: int, rate: float) -> dict[str, float]:
    channel = sub.channels.get("latency")
    latencies: list[float] = []
    done = threading.Event()

    def listener(message: Message) -> None:
        latencies.append((time.monotonic_ns() - int(message.data)) / 1e6)
        if len(latencies) == count:
            done.set()

    channel.subscribe(listener)
    channel.attach()
    pub.send(("paced", "latency", count, 0, rate))
    if not done.wait(count / rate + 60):
        raise RuntimeError(f"received only {len(latencies)} of {count}")
    pub.recv()
    ordered = sorted(latencies)
    return {
        "messages": count,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def _attach_many(client: AblyRealtime, prefix: str, channels: int) -> None:
    made = [client.channels.get(f"{prefix}-{i}") for i in range(channels)]
    for channel in made:
        channel.subscribe(lambda _m: None, attach=False)
    core = client._loop.core
    for channel in made[:-1]:  # pipelined attaches; the last one is waited for
        client._loop.post(lambda now, name=channel.name: core.attach(name, None, now))
    made[-1].attach(timeout=60)
    while any(c.state.value != "attached" for c in made):
        time.sleep(0.01)


def bench_memory(host: str, port: int, key: str, fmt: str, channels: int) -> dict[str, float]:
    """RSS growth for ``channels`` attached channels, then Python-heap growth for as many more."""
    client = _client(host, port, key, fmt, realtime_request_timeout=30.0)
    client.connect(timeout=10)
    _attach_many(client, "warm-up", 50)
    rss0 = _rss_bytes()
    _attach_many(client, "rss", channels)
    rss = _rss_bytes() - rss0
    tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    _attach_many(client, "heap", channels)
    heap = tracemalloc.get_traced_memory()[0] - heap0
    tracemalloc.stop()
    client.close()
    return {
        "channels": channels,
        "rss_kb_per_channel": rss / channels / 1024,
        "heap_kb_per_channel": heap / channels / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50, help="messages per ProtocolMessage")
    parser.add_argument("--size", type=int, default=100, help="payload bytes")
    parser.add_argument("--latency-messages", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0, help="latency run, messages/s")
    parser.add_argument("--channels", type=int, default=1_000)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    emu_pipe, emu_child = ctx.Pipe()
    emulator = ctx.Process(target=_emulator_main, args=(emu_child,), daemon=True)
    emulator.start()
    host, port, key = emu_pipe.recv()
    pub_pipe, pub_child = ctx.Pipe()
    publisher = ctx.Process(
        target=_publisher_main, args=(pub_child, host, port, key, args.format), daemon=True
    )
    publisher.start()
    try:
        sub = _client(host, port, key, args.format)
        sub.connect(timeout=10)
        print(f"format={args.format}")
        result = bench_throughput(sub, pub_pipe, args.messages, args.batch, args.size)
        print(
            f"inbound: {result['msg_per_s']:,.0f} msg/s, "
            f"{result['cpu_us_per_msg']:.1f} us CPU/msg ({args.messages} x {args.size} B, "
            f"{args.batch}/frame)"
        )
        result = bench_latency(sub, pub_pipe, args.latency_messages, args.rate)
        print(
            f"latency publish->callback: p50 {result['p50_ms']:.2f} ms, "
            f"p99 {result['p99_ms']:.2f} ms ({args.latency_messages} at {args.rate:g}/s)"
        )
        sub.close()
        result = bench_memory(host, port, key, args.format, args.channels)
        print(
            f"memory per attached channel: {result['rss_kb_per_channel']:.1f} KB RSS, "
            f"{result['heap_kb_per_channel']:.1f} KB Python heap ({args.channels} channels)"
        )
    finally:
        pub_pipe.send(None)
        publisher.join(10)
        emu_pipe.send("stop")
        emulator.join(10)


if __name__ == "__main__":
    main()
