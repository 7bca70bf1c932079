"""Benchmark: resident memory of one bridge process with 10,000 attached channels.

Run: ``/work/.venv/bin/python bench/bridge_channels_memory.py`` (``--channels``,
``--per-connection``, ``--format json``). Needs the Redis at ``REDIS_URL``
(default ``redis://127.0.0.1:6379/0``); every key it writes is under a unique
prefix and deleted at the end.

The emulator runs in its own process. This process runs the real bridge
(``BridgeApp``: the connection pool of ``AblyRealtime`` clients, the daemon,
the dispatcher, checkpoints in Redis) with one route over ``--channels``
exact channel names and a Redis Streams target, waits until every channel is
*live* (attached, seeded, backfilled), then reports the resident set size
(``VmRSS``) and its peak (``VmHWM``) from ``/proc/self/status``, the number of
connections and threads, and the time to bring every channel live. Target from
the issue: 10,000 channels under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import threading
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import redis


def _emulator_main(pipe: Connection) -> None:
    from ably_bridge.emulator import Emulator

    with Emulator() as emu:
        pipe.send((emu.port, emu.root_key))
        pipe.recv()  # until told to stop


def _status(field: str) -> float:
    """A ``/proc/self/status`` field in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run(channels: int, per_connection: int, redis_url: str, timeout: float) -> dict[str, Any]:
    from ably_bridge.bridge.app import BridgeApp
    from ably_bridge.bridge.config import parse_config

    parent, child = mp.Pipe()
    proc = mp.Process(target=_emulator_main, args=(child,), daemon=True)
    proc.start()
    port, key = parent.recv()
    prefix = f"bench-mem:{uuid.uuid4().hex[:8]}"
    names = [f"room-{i}" for i in range(channels)]
    config = parse_config(
        {
            "log_level": "WARNING",
            "ably": {"endpoint": "127.0.0.1", "port": port, "tls": False,
                     "channels_per_connection": per_connection},
            "redis": {"url": redis_url, "key_prefix": prefix},
            "dead_letter": {"stream": f"{prefix}:deadletter"},
            "health": {"enabled": False},
            "routes": [{"id": "main", "channels": names, "sources": ["message"],
                        "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}]}],
        },
        {"ABLY_KEY": key},
    )  # fmt: skip
    baseline = _status("VmRSS")
    app = BridgeApp(config)
    thread = threading.Thread(target=app.run, daemon=True)
    started = time.monotonic()
    thread.start()
    deadline = started + timeout
    live = 0
    while time.monotonic() < deadline:
        live = app.daemon.phase_counts().get("live", 0)
        if live >= channels:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    time.sleep(2.0)  # let the last acknowledgements and seeds settle
    result = {
        "channels": channels,
        "live": live,
        "connections": app.source.connection_count(),  # type: ignore[attr-defined]
        "threads": threading.active_count(),
        "seconds_to_live": round(took, 1),
        "rss_mb": round(_status("VmRSS"), 1),
        "peak_rss_mb": round(_status("VmHWM"), 1),
        "baseline_rss_mb": round(baseline, 1),
    }
    app.daemon.request_stop()
    thread.join(timeout=60)
    parent.send("stop")
    proc.join(timeout=10)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--per-connection", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    result = run(args.channels, args.per_connection, args.redis, args.timeout)
    if args.format == "json":
        print(json.dumps(result))
        return
    print(
        f"{result['live']}/{result['channels']} channels live over {result['connections']} "
        f"connections in {result['seconds_to_live']}s; {result['threads']} threads"
    )
    print(
        f"resident: {result['rss_mb']} MB (peak {result['peak_rss_mb']} MB; "
        f"{result['baseline_rss_mb']} MB before the bridge)"
    )


if __name__ == "__main__":
    main()
