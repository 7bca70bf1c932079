"""Fan-out benchmark for the emulator, with every client outside the emulator's process.

The emulator runs as ``python -m ably_bridge.emulator`` in its own process (or
``--url``/``--key`` name one already running). ``--procs`` subscriber processes
share ``--subscribers`` realtime connections spread over ``--channels``
channels; one publisher process sends ``--messages`` MESSAGE ProtocolMessages
round-robin over the channels, keeping ``--window`` un-ACKed at a time. The
clients speak WebSocket over raw sockets with a minimal frame codec
(``raw_ws.py``, no per-frame library overhead), so the figure reflects the
server.

Prints messages delivered per second summed over subscribers, measured from
the first publish to the last delivery, and the emulator's CPU seconds.

    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 20 --messages 2000
    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 20 --messages 2000 --format json
    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 100 --channels 10 --messages 5000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import cpu_seconds  # (bench/ is this script's folder, first on sys.path)
from raw_ws import MESSAGE, decode, publisher, subscribe


# -- processes ------------------------------------------------------------------------
def subscriber(
    url: str,
    key: str,
    fmt: str,
    channels: list[str],
    expected: list[int],
    ready: Any,
    results: Any,
) -> None:
    """Hold one connection per entry of ``channels``; count MESSAGE items until ``expected``."""
    socks = [subscribe(url, key, fmt, [channel]) for channel in channels]
    ready.put(len(socks))
    selector = selectors.DefaultSelector()
    counts = [0] * len(socks)
    for index, (sock, _) in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    first = last = 0.0
    remaining = sum(1 for c in expected if c > 0)
    deadline = time.monotonic() + 600
    while remaining and time.monotonic() < deadline:
        for event, _ in selector.select(timeout=1.0):
            index = event.data
            sock, reader = socks[index]
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed a subscriber")
            for raw in reader.feed(data):
                pm = decode(raw, fmt)
                if pm.get("action") == MESSAGE:
                    before = counts[index]
                    counts[index] += len(pm["messages"])
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    if before < expected[index] <= counts[index]:
                        remaining -= 1
    results.put((sum(counts), first, last))
    for sock, _ in socks:
        sock.close()


def start_emulator() -> tuple[subprocess.Popen[bytes], str, str]:
    keys = Path(tempfile.mkdtemp(prefix="fanout-")) / "keys.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ably_bridge.emulator",
            "--port",
            "0",
            "--log-level",
            "WARNING",
            "--keys-file",
            str(keys),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not keys.exists() or not keys.read_text().strip().endswith("}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    info = json.loads(keys.read_text())
    return proc, str(info["endpoint"]), str(info["keys"][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=20, help="connections in total")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--messages", type=int, default=2000, help="published in total")
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--window", type=int, default=100, help="un-ACKed publishes in flight")
    parser.add_argument("--size", type=int, default=100, help="payload characters")
    parser.add_argument("--format", choices=["json", "msgpack"], default="msgpack")
    parser.add_argument("--url", help="an emulator already running (default: start one)")
    parser.add_argument("--key", help="its root key (with --url)")
    args = parser.parse_args()
    fmt = args.format
    emulator = None
    if args.url:
        url, key = args.url, args.key
    else:
        emulator, url, key = start_emulator()
    try:
        names = [f"bench-{i}" for i in range(args.channels)]
        per_channel = [
            args.messages // len(names) + (i < args.messages % len(names))
            for i in range(len(names))
        ]
        assignment = [names[i % len(names)] for i in range(args.subscribers)]
        ctx = mp.get_context("spawn")
        ready, results, started_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
        procs = []
        for p in range(args.procs):
            mine = assignment[p :: args.procs]
            if not mine:
                continue
            expected = [per_channel[names.index(c)] for c in mine]
            procs.append(
                ctx.Process(target=subscriber, args=(url, key, fmt, mine, expected, ready, results))
            )
        for proc in procs:
            proc.start()
        connected = sum(ready.get(timeout=120) for _ in procs)
        cpu_before = cpu_seconds(emulator.pid) if emulator else None
        pub = ctx.Process(
            target=publisher,
            args=(url, key, fmt, names, args.messages),
            kwargs={"window": args.window, "size": args.size, "clock": time.perf_counter,
                    "out": started_q},
        )  # fmt: skip
        pub.start()
        totals = [results.get(timeout=600) for _ in procs]
        started = started_q.get(timeout=600)[0]
        pub.join()
        for proc in procs:
            proc.join()
        cpu = (
            cpu_seconds(emulator.pid) - cpu_before if emulator and cpu_before is not None else None
        )
        delivered = sum(t[0] for t in totals)
        elapsed = max(t[2] for t in totals) - started
        line = (
            f"{fmt}: {connected} subscribers on {len(names)} channel(s), "
            f"{args.messages} published: {delivered} delivered in {elapsed:.2f}s "
            f"= {delivered / elapsed:,.0f} msg/s"
        )
        if cpu is not None:
            line += f" (emulator CPU {cpu:.2f}s, {delivered / cpu:,.0f} deliveries per CPU-second)"
        print(line)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
