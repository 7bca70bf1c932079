"""Benchmark: our realtime client against the official async ``ably`` client, same feed.

Run: ``/work/.venv/bin/python bench/realtime_vs_official.py`` (``--format json``,
``--messages``, ``--connections``, ``--channels``; ``--only single|spread|latency|memory``,
repeatable, runs part of it; ``--profile ours`` samples every thread of that
client's subscriber process during the feed and prints where the samples fall).

Every client run happens in a fresh process (``multiprocessing`` spawn), so its
CPU and resident memory are its own; the emulator (``python -m
ably_bridge.emulator``) and the publisher run in processes of their own too.

1. **Inbound throughput**: the subscriber process opens ``--connections``
   connections and attaches ``--channels`` channels spread over them (channel
   ``i`` on connection ``i % connections``), one listener each counting
   messages. A raw-WebSocket publisher (``raw_ws.publisher``) then sends
   ``--messages`` messages round-robin over the channels, one per
   ProtocolMessage, 100 un-ACKed. Reported: messages/s (first to last delivery)
   and CPU per message (``time.process_time`` of the subscriber process, every
   thread, from the start of the feed to the last message), and messages per
   CPU-second, with the kernel's share of that CPU and the subscriber's context
   switches per message (``getrusage``). Scenarios: 1 connection x 1 channel,
   50 connections x 1,000 channels.
2. **Latency**: one connection, one channel; a raw publisher sends
   ``--latency-messages`` messages at ``--rate``/s stamped with
   ``time.monotonic_ns()`` (system-wide on Linux); p50/p99 publish->callback.
3. **Memory per attached channel**: one connection attaches 50 channels (warm-up),
   then ``--memory-channels`` more; the growth of resident memory
   (``/proc/self/statm``) divided by the channel count.

The official client authenticates with a token minted by our REST client (its
REST layer refuses Basic auth over plain HTTP) and, as its WebSocket URL
ignores ``port``, gets ``realtime_host="host:port"`` (tests/interop/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import logging
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from raw_ws import publisher
from rest_vs_official import emulator_process

CLIENTS = ("ours", "ours-inline", "official")  # ours-inline: subscribe(..., inline=True)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _usage() -> tuple[float, float, int]:
    """(CPU seconds, of which in the kernel, context switches) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


# -- our client ------------------------------------------------------------------------
def _ours_connect(host: str, port: int, key: str, fmt: str) -> Any:
    from ably_bridge import AblyRealtime

    client = AblyRealtime(
        key=key,
        endpoint=host,
        port=port,
        tls=False,
        use_binary_protocol=fmt == "msgpack",
        auto_connect=False,
        realtime_request_timeout=60.0,
    )
    client.connect(timeout=30)
    return client


def _ours_attach(
    clients: list[Any], names: list[str], listener: Callable[[Any], None], inline: bool = False
) -> None:
    channels = []
    for index, name in enumerate(names):
        channel = clients[index % len(clients)].channels.get(name)
        channel.subscribe(listener, inline=inline, wait=False)  # attach in the background (RTL7g)
        channels.append(channel)
    deadline = time.monotonic() + 120
    while any(c.state.value != "attached" for c in channels):
        if time.monotonic() > deadline:
            raise RuntimeError("channels did not attach")
        time.sleep(0.01)


# -- the official client ---------------------------------------------------------------
def _token(host: str, port: int, key: str) -> str:
    from ably_bridge import AblyRest

    with AblyRest(key=key, endpoint=host, port=port, tls=False) as rest:
        return str(rest.auth.request_token().token)


async def _official_connect(host: str, port: int, token: str, fmt: str) -> Any:
    from ably import AblyRealtime

    logging.getLogger("ably").setLevel(logging.ERROR)
    client = AblyRealtime(
        token=token,
        realtime_host=f"{host}:{port}",
        tls=False,
        use_binary_protocol=fmt == "msgpack",
    )
    await asyncio.wait_for(client.connection.once_async("connected"), 30)
    return client


async def _official_attach(
    clients: list[Any], names: list[str], listener: Callable[[Any], None]
) -> None:
    subscriptions = [
        clients[index % len(clients)].channels.get(name).subscribe(listener)
        for index, name in enumerate(names)
    ]
    await asyncio.wait_for(asyncio.gather(*subscriptions), 120)


class Sampler:
    """A tiny all-thread sampling profiler (cProfile sees one thread; py-spy is absent)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.leaf: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                self.samples += 1
                where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
                self.leaf[where] += 1
                seen = set()
                f: Any = frame
                while f is not None:
                    name = f"{Path(f.f_code.co_filename).name}:{f.f_code.co_name}"
                    if name not in seen:
                        seen.add(name)
                        self.inclusive[name] += 1
                    f = f.f_back

    def report(self) -> None:
        print(f"{self.samples} thread samples (idle waits included)")
        print("leaf functions:")
        for name, n in self.leaf.most_common(25):
            print(f"  {n / self.samples:6.1%}  {name}")
        print("inclusive:")
        for name, n in self.inclusive.most_common(40):
            print(f"  {n / self.samples:6.1%}  {name}")


# -- one measurement in a fresh process ---------------------------------------------------
def _flood_child(
    client: str, host: str, port: int, key: str, fmt: str, connections: int,
    channels: int, expected: int, ready: Any, go: Any, out: Any, profile: bool,
) -> None:  # fmt: skip
    names = _names("flood", channels)
    counter = itertools.count(1)
    count = [0]
    first = [0.0]
    last = [0.0]
    done = threading.Event()

    def listener(_message: Any) -> None:
        # Listeners of different channels may run at once (on pool workers, or
        # inline on the readers of different connections): count atomically.
        n = next(counter)
        count[0] = n
        if n == 1:
            first[0] = time.perf_counter()
        if n == expected:
            last[0] = time.perf_counter()
            done.set()

    profiler = Sampler() if profile else None
    if client.startswith("ours"):
        clients = [_ours_connect(host, port, key, fmt) for _ in range(connections)]
        _ours_attach(clients, names, listener, inline=client == "ours-inline")
        ready.put(True)
        go.get()
        usage0 = _usage()
        if profiler:
            profiler.start()
        if not done.wait(600):
            raise RuntimeError(f"received {count[0]} of {expected}")
        if profiler:
            profiler.stop()
        usage = _usage()
        for c in clients:
            c.close()
    else:
        token = _token(host, port, key)

        async def run() -> tuple[tuple[float, float, int], tuple[float, float, int]]:
            clients = [await _official_connect(host, port, token, fmt) for _ in range(connections)]
            await _official_attach(clients, names, listener)
            ready.put(True)
            await asyncio.to_thread(go.get)
            before = _usage()
            if profiler:
                profiler.start()
            while not done.is_set():
                await asyncio.sleep(0.005)
            if profiler:
                profiler.stop()
            after = _usage()
            for c in clients:
                await c.close()
            return before, after

        usage0, usage = asyncio.run(run())
    if profiler:
        profiler.report()
    out.put(
        {
            "messages": count[0],
            "seconds": last[0] - first[0],
            "cpu": usage[0] - usage0[0],
            "sys": usage[1] - usage0[1],
            "switches": usage[2] - usage0[2],
        }
    )


def _latency_child(
    client: str, host: str, port: int, key: str, fmt: str, expected: int,
    ready: Any, out: Any,
) -> None:  # fmt: skip
    latencies: list[float] = []
    done = threading.Event()

    def listener(message: Any) -> None:
        stamp = int(message.data.split(":", 1)[0])
        latencies.append((time.monotonic_ns() - stamp) / 1e6)
        if len(latencies) == expected:
            done.set()

    if client.startswith("ours"):
        sub = _ours_connect(host, port, key, fmt)
        _ours_attach([sub], ["latency"], listener, inline=client == "ours-inline")
        ready.put(True)
        done.wait(600)
        sub.close()
    else:
        token = _token(host, port, key)

        async def run() -> None:
            sub = await _official_connect(host, port, token, fmt)
            await _official_attach([sub], ["latency"], listener)
            ready.put(True)
            while not done.is_set():
                await asyncio.sleep(0.01)
            await sub.close()

        asyncio.run(run())
    ordered = sorted(latencies)
    out.put(
        {
            "p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        }
    )


def _memory_child(
    client: str, host: str, port: int, key: str, fmt: str, channels: int, out: Any
) -> None:
    def noop(_message: Any) -> None:
        pass

    if client == "ours":
        sub = _ours_connect(host, port, key, fmt)
        _ours_attach([sub], _names("warm", 50), noop)
        before = _rss()
        _ours_attach([sub], _names("mem", channels), noop)
        grown = _rss() - before
        sub.close()
    else:
        token = _token(host, port, key)

        async def run() -> int:
            sub = await _official_connect(host, port, token, fmt)
            await _official_attach([sub], _names("warm", 50), noop)
            before = _rss()
            await _official_attach([sub], _names("mem", channels), noop)
            grown = _rss() - before
            await sub.close()
            return grown

        grown = asyncio.run(run())
    out.put({"kb_per_channel": grown / channels / 1024})


# -- orchestration ------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100, help="payload characters")
    parser.add_argument("--connections", type=int, default=50, help="spread scenario")
    parser.add_argument("--channels", type=int, default=1_000, help="spread scenario")
    parser.add_argument(
        "--feed-rate",
        type=float,
        default=0.0,
        help="throughput runs: publish at this many messages/s (default: as fast as acked)",
    )
    parser.add_argument("--latency-messages", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0, help="latency run, messages/s")
    parser.add_argument("--memory-channels", type=int, default=1_000)
    parser.add_argument("--profile", choices=CLIENTS, help="sample that client's threads")
    parser.add_argument(
        "--only",
        choices=["single", "spread", "latency", "memory"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    args = parser.parse_args()
    parts = set(args.only or ["single", "spread", "latency", "memory"])
    fmt = args.format
    ctx = mp.get_context("spawn")
    with emulator_process() as (host, port, key):
        url = f"http://{host}:{port}"
        flood: dict[tuple[str, str], dict[str, float]] = {}
        scenarios = []
        if "single" in parts:
            scenarios.append(("1 conn x 1 channel", 1, 1))
        if "spread" in parts:
            scenarios.append(
                (
                    f"{args.connections} conns x {args.channels} channels",
                    args.connections,
                    args.channels,
                )
            )
        for label, connections, channels in scenarios:
            for client in CLIENTS:
                ready, go, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
                child = ctx.Process(
                    target=_flood_child,
                    args=(client, host, port, key, fmt, connections, channels, args.messages,
                          ready, go, out, args.profile == client),
                )  # fmt: skip
                child.start()
                ready.get(timeout=300)
                go.put(True)
                # Paced (--feed-rate): the same feed for both, CPU at an equal load.
                pub = ctx.Process(
                    target=publisher,
                    args=(url, key, fmt, _names("flood", channels), args.messages),
                    kwargs={"size": args.size, "rate": args.feed_rate,
                            "window": 0 if args.feed_rate else 100},
                )  # fmt: skip
                pub.start()
                flood[(label, client)] = out.get(timeout=900)
                pub.join(60)
                child.join(60)
        latency: dict[str, dict[str, float]] = {}
        for client in CLIENTS if "latency" in parts else ():
            ready, out = ctx.Queue(), ctx.Queue()
            child = ctx.Process(
                target=_latency_child,
                args=(client, host, port, key, fmt, args.latency_messages, ready, out),
            )
            child.start()
            ready.get(timeout=120)
            pub = ctx.Process(
                target=publisher,
                args=(url, key, fmt, ["latency"], args.latency_messages),
                kwargs={"size": 0, "rate": args.rate, "window": 0, "stamp": time.monotonic_ns},
            )
            pub.start()
            latency[client] = out.get(timeout=600)
            pub.join(60)
            child.join(60)
        memory: dict[str, dict[str, float]] = {}
        for client in ("ours", "official") if "memory" in parts else ():
            out = ctx.Queue()
            child = ctx.Process(
                target=_memory_child,
                args=(client, host, port, key, fmt, args.memory_channels, out),
            )
            child.start()
            memory[client] = out.get(timeout=600)
            child.join(60)

    feed = f"paced at {args.feed_rate:g}/s" if args.feed_rate else "flood (100 un-ACKed)"
    print(f"format={fmt}, {args.messages} messages of {args.size} characters, 1 per frame, {feed}")
    if scenarios:
        print(
            f"{'scenario':<28}{'client':>10}{'msg/s':>10}{'CPU/msg':>11}{'msg/CPU-s':>11}"
            f"{'vs official':>13}{'kernel':>8}{'switches/msg':>14}"
        )
    for label, _, _ in scenarios:
        base = flood[(label, "official")]
        for client in CLIENTS:
            cell = flood[(label, client)]
            per_cpu = cell["messages"] / cell["cpu"]
            print(
                f"{label:<28}{client:>10}{cell['messages'] / cell['seconds']:>10,.0f}"
                f"{cell['cpu'] / cell['messages'] * 1e6:>8.1f} us{per_cpu:>11,.0f}"
                f"{per_cpu / (base['messages'] / base['cpu']):>12.2f}x"
                f"{cell['sys'] / cell['cpu']:>8.0%}{cell['switches'] / cell['messages']:>14.2f}"
            )
    for client in latency:
        print(
            f"latency publish->callback {client:>9}: p50 {latency[client]['p50']:.2f} ms, "
            f"p99 {latency[client]['p99']:.2f} ms ({args.latency_messages} at {args.rate:g}/s)"
        )
    for client in memory:
        print(
            f"memory per attached channel {client:>9}: "
            f"{memory[client]['kb_per_channel']:.1f} KB RSS ({args.memory_channels} channels)"
        )


if __name__ == "__main__":
    main()
