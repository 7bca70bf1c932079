"""Benchmark: building the ``/status`` document with many channels.

Times :meth:`ably_bridge.bridge.status.BridgeStatus.build` (what ``GET /status``
runs before JSON encoding) and the JSON encoding, in milliseconds per request,
for a bridge holding ``--channels`` live channels over two routes (the daemon
driven by the fake source, as in tests/bridge/test_daemon.py), with a default
page (100 channels), a filtered page (``state=paused``, nothing matches), a
route filter, and a full page of 1,000.

    .venv/bin/python bench/status_endpoint.py
    .venv/bin/python bench/status_endpoint.py --channels 10000 --repeat 20
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from ably_bridge.bridge.app import SinkPool
from ably_bridge.bridge.config import parse_config
from ably_bridge.bridge.daemon import Daemon, InlineExecutor
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.source import FakeSource
from ably_bridge.bridge.status import BridgeStatus, StatusSources
from ably_bridge.bridge.status_query import StatusQuery
from ably_bridge.clock import FakeClock


def build_bridge(channels: int) -> BridgeStatus:
    names = [f"room:{i:06d}" for i in range(channels)]
    config = parse_config(
        {
            "redis": {"url": "memory://"},
            "delivery": {"buffer_size": 1_000_000},
            "routes": [
                {"id": "all", "channels": names,
                 "targets": [{"type": "redis_stream", "key": "s:{channel}"}]},
                {"id": "some", "channels": names[::10],
                 "targets": [{"type": "redis_stream", "key": "t:{channel}"}]},
            ],
        },
        {"ABLY_KEY": "app.key:secret"},
    )  # fmt: skip
    clock = FakeClock()
    metrics = BridgeMetrics()
    pool = SinkPool(config, metrics, clock)
    dispatcher = Dispatcher(config, sink_for=pool, clock=clock, rng=random.Random(0))
    source = FakeSource(time_ms=clock.time_ms)
    daemon = Daemon(
        config, source=source, history=source, dispatcher=dispatcher, checkpoints=None,
        executor=InlineExecutor(), metrics=metrics, clock=clock,
    )  # fmt: skip
    daemon.start()
    daemon.run_until_idle(max_steps=100_000)
    for name in names[::7]:  # some channels with a delivered message
        source.publish(name, "e", 1)
    daemon.run_until_idle(max_steps=100_000)
    return BridgeStatus(
        StatusSources(
            config=lambda: daemon.config, daemon=daemon, dispatcher=dispatcher,
            sink_for=pool.peek, ready=daemon.readiness,
            connections=lambda: [(0, "connected", len(daemon.tracks), 0.0)],
            connection_errors=dict, monotonic=clock.monotonic, time_ms=clock.time_ms,
        )
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    status = build_bridge(args.channels)
    cases = {
        "default page (100)": StatusQuery(),
        "state=paused (none)": StatusQuery(state="paused"),
        "route=some": StatusQuery(route="some"),
        "limit=1000": StatusQuery(limit=1000),
    }
    results = {}
    for label, query in cases.items():
        build, encode, size = [], [], 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            doc = status.build(query)
            middle = time.perf_counter()
            body = json.dumps(doc, separators=(",", ":")).encode()
            end = time.perf_counter()
            build.append((middle - start) * 1000)
            encode.append((end - middle) * 1000)
            size = len(body)
        results[label] = {
            "build_ms": round(statistics.median(build), 2),
            "json_ms": round(statistics.median(encode), 2),
            "bytes": size,
        }
    if args.format == "json":
        print(json.dumps({"channels": args.channels, "results": results}, indent=2))
        return
    print(f"/status with {args.channels} channels (median of {args.repeat}):")
    for label, r in results.items():
        print(f"  {label:22s} build {r['build_ms']:7.2f} ms  json {r['json_ms']:6.2f} ms  "
              f"{r['bytes']:>9,} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
