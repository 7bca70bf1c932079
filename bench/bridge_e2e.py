"""End-to-end benchmark: emulator -> consumer -> Redis Streams or Celery (Redis / RabbitMQ).

Three processes, so that none of them charges its CPU or GIL to another:

* the **emulator** (``python -m ably_bridge.emulator``, see ``emulator_fanout.py``);
* the **consumer** under test, one process:
  ``--consumer bridge`` (default) runs ``ably-bridge run`` with a generated
  configuration; ``--consumer handwritten`` runs ``handwritten_alternative.py``
  (official ``ably`` SDK + redis-py / Celery ``send_task``); ``--consumer
  ceiling`` runs raw-socket WebSocket subscribers that only count messages
  (the emulator's own ceiling for the workload, with no sink at all);
* the **publisher** (``raw_ws.publisher``): a raw WebSocket connection sending MESSAGE
  ProtocolMessages of ``--batch`` messages each (``--size``-character string
  payloads), round-robin over ``--channels`` channels, like an Ably client
  publishing arrays. The emulator fans each ProtocolMessage out as one frame,
  so ``--batch`` is also the number of messages per inbound frame.

Measured:

* **msg/s**: deliveries counted at the sink (``XLEN`` of the channel streams;
  ``LLEN`` of the Celery queue on Redis; the queue's message count from a
  passive ``queue.declare`` on RabbitMQ - i.e. tasks *accepted by the broker*,
  with publisher confirms on AMQP; there is no worker), from the first publish
  to the last delivery;
* **CPU us/msg**: utime+stime of the consumer process (all threads) from
  ``/proc/<pid>/stat`` over the run, divided by messages delivered;
* **RSS**: the consumer's peak ``VmRSS`` during the run;
* **latency** (``--rate``): for streams, Ably timestamp (set by the emulator on
  publish, ms) -> stream entry id (Redis clock at XADD, ms), for every entry;
  for Celery, the bridge's ``ably_bridge_delivery_latency_seconds`` histogram
  (Ably timestamp -> broker accepted), interpolated within buckets.

The default feed (``--feed realistic``) is what a bridge mostly receives: one
message per frame, over 1,000 channels and 5 connections. ``--feed batched`` is
50 messages per frame on one channel and one connection. ``--channels``,
``--connections`` and ``--batch`` override either.

Examples::

    /work/.venv/bin/python bench/bridge_e2e.py --sink streams --messages 50000
    /work/.venv/bin/python bench/bridge_e2e.py --sink streams --feed batched --messages 100000
    /work/.venv/bin/python bench/bridge_e2e.py --sink celery-amqp --messages 30000
    /work/.venv/bin/python bench/bridge_e2e.py --sink streams --rate 2000 --duration 20
    /work/.venv/bin/python bench/bridge_e2e.py --consumer ceiling --messages 100000
    /work/.venv/bin/python bench/bridge_e2e.py --consumer handwritten --sink streams
    /work/.venv/bin/python bench/bridge_e2e.py --sink streams --redis-cluster  # 3 primaries
    BENCH_PROFILE=/tmp/bridge.prof /work/.venv/bin/python bench/bridge_e2e.py ...  # cProfile
    BENCH_PYSPY=/tmp/p.txt BENCH_PYSPY_ARGS=--gil /work/.venv/bin/python bench/bridge_e2e.py ...

Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), RabbitMQ at
``AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672//``).
``--redis-cluster`` starts a 3-primary Redis Cluster on loopback ports instead
(tests/cluster_support.py, no replicas: the CPU goes to the nodes that write)
and points the bridge at it with a ``redis+cluster://`` URL; the server CPU is
then that of the three nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from e2e_probe import SinkProbe  # noqa: E402
from emulator_fanout import (  # noqa: E402
    start_emulator,
)
from measure import (  # noqa: E402
    AMQP_URL,
    REDIS_URL,
    cpu_seconds,
    find_pid,
    free_port,
    histogram,
    histogram_quantile,
    quantile,
    rss_kb,
)
from raw_ws import publisher  # noqa: E402

TASK = "bench.count"
# --feed: (channels, connections, messages per frame). "realistic" is what a bridge
# mostly receives from Ably (one message per ProtocolMessage, spread over many channels
# and connections); "batched" is a publisher of 50-message arrays on one channel.
FEEDS: dict[str, dict[str, int]] = {
    "realistic": {"channels": 1000, "connections": 5, "batch": 1},
    "batched": {"channels": 1, "connections": 1, "batch": 50},
}


# -- consumers -----------------------------------------------------------------------------
def bridge_config(
    args: argparse.Namespace, emu_port: int, prefix: str, channels: list[str]
) -> dict[str, Any]:
    if args.sink == "streams":
        target: dict[str, Any] = {"type": "redis_stream", "key": prefix + ":s:{channel}"}
    else:
        target = {"type": "celery", "task": TASK, "queue": f"{prefix}-q"}
        if args.sink == "celery-amqp":
            target["queue_type"] = args.queue_type
    ably: dict[str, Any] = {
        "endpoint": "127.0.0.1",
        "port": emu_port,
        "tls": False,
        "use_binary_protocol": args.format == "msgpack",
    }
    # Connections: the bridge shards its channels over realtime connections
    # (ably.channels_per_connection); set it so that --connections is exact.
    ably["channels_per_connection"] = math.ceil(len(channels) / args.connections)
    return {
        "log_level": "WARNING",
        "log_format": "text",
        "ably": ably,
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "dead_letter": {"stream": f"{prefix}:deadletter"},
        "delivery": {"batch_size": args.batch_size, "buffer_size": args.buffer_size},
        "routes": [
            {"id": "bench", "channels": channels, "sources": ["message"], "targets": [target]}
        ],
    }


class Consumer:
    def __init__(
        self,
        args: argparse.Namespace,
        url: str,
        key: str,
        prefix: str,
        channels: list[str],
        tmp: Path,
    ) -> None:
        self.args = args
        self.health_port = free_port()
        self.log = (tmp / "consumer.log").open("wb")
        env = {
            **os.environ,
            "ABLY_KEY": key,
            # (this tree first; what PYTHONPATH held after it, e.g. a profiling hook)
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
            ).rstrip(os.pathsep),
            "BENCH_COUNTER_KEY": f"{prefix}:ceiling",
        }
        env.pop("REDIS_URL", None)
        env.pop("CELERY_BROKER_URL", None)
        if args.sink != "streams":  # a URL with a password goes in the environment
            env["CELERY_BROKER_URL"] = REDIS_URL if args.sink == "celery-redis" else AMQP_URL
        py = [sys.executable]
        profile = os.environ.get("BENCH_PROFILE")
        if profile and args.consumer != "ceiling":
            py += ["-m", "cProfile", "-o", profile]
        if args.consumer == "bridge":
            config = tmp / "bridge.yaml"
            emu_port = int(url.rsplit(":", 1)[1])
            config.write_text(yaml.safe_dump(bridge_config(args, emu_port, prefix, channels)))
            cmd = [*py, "-m", "ably_bridge.cli", "run", "--config", str(config),
                   "--health-port", str(self.health_port)]  # fmt: skip
        elif args.consumer == "handwritten":
            cmd = [*py, str(HERE / "handwritten_alternative.py"), "consume",
                   "--url", url, "--key", key, "--sink", args.sink, "--prefix", prefix,
                   "--format", args.format, "--channels", ",".join(channels),
                   "--mode", args.hw_mode, "--queue-type", args.queue_type,
                   "--connections", str(args.connections),
                   "--redis-url", REDIS_URL, "--amqp-url", AMQP_URL]  # fmt: skip
        else:
            code = (
                f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                "from e2e_feed import ceiling_main; "
                f"ceiling_main({url!r}, {key!r}, {args.format!r}, {channels!r}, {args.connections})"
            )
            cmd = [*py, "-c", code]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )
        self.pid = self.proc.pid

    def metrics(self) -> str:
        if self.args.consumer != "bridge":
            return ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def wait_ready(self, probe: SinkProbe, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"consumer exited: {self.proc.returncode}; see {self.log.name}")
            if self.args.consumer == "bridge":
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.health_port}/readyz", timeout=1
                    ) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
            elif probe.redis.get(probe.counter + ":ready"):
                return
            time.sleep(0.1)
        raise RuntimeError("consumer not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(
                signal.SIGTERM if self.args.consumer != "ceiling" else signal.SIGKILL
            )
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- one run -------------------------------------------------------------------------------
def publish(
    args: argparse.Namespace, url: str, key: str, channels: list[str], total: int, rate: float
) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(
        target=publisher,
        args=(url, key, args.format, channels, total),
        kwargs={"batch": args.batch, "size": args.size, "rate": rate, "window": args.window,
                "stamp": time.time_ns, "out": out},
    )  # fmt: skip
    proc.start()
    return proc, out


def wait_count(
    probe: SinkProbe, consumer: Consumer, target: int, stall: float = 30.0
) -> tuple[float, float, int]:
    """Poll until the sink holds ``target``; returns (first-change time, done time, peak RSS KB)."""
    first = 0.0
    peak = 0
    seen, seen_at = -1, time.monotonic()
    start_count = probe.count()
    while True:
        n = probe.count()
        now = time.time()
        peak = max(peak, rss_kb(consumer.pid))
        if n != start_count and not first:
            first = now
        if n >= target:
            return first, now, peak
        if n != seen:
            seen, seen_at = n, time.monotonic()
        elif time.monotonic() - seen_at > stall:
            raise RuntimeError(f"stalled at {n} of {target}")
        if consumer.proc.poll() is not None:
            raise RuntimeError("consumer exited during the run")
        time.sleep(0.01)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.redis_cluster:
        return run_with(args, [])
    global REDIS_URL
    sys.path.insert(0, str(ROOT))
    from tests.cluster_support import LocalCluster

    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="bench-cluster-")), replicas=0).start()
    saved, REDIS_URL = REDIS_URL, cluster.url
    try:
        result = run_with(args, [p.pid for p in cluster.procs.values()])
        result["redis"] = "cluster-3"
        return result
    finally:
        REDIS_URL = saved
        cluster.stop()


def run_with(args: argparse.Namespace, cluster_pids: list[int]) -> dict[str, Any]:
    emulator, url, key = start_emulator()
    prefix = f"bench{os.getpid()}"
    channels = [f"bench-{i}" for i in range(args.channels)]
    sink = "none" if args.consumer == "ceiling" else args.sink
    probe = SinkProbe(sink, prefix, channels, args.queue_type)
    probe.clear()
    tmp = Path(tempfile.mkdtemp(prefix="bridge-e2e-"))
    consumer = Consumer(args, url, key, prefix, channels, tmp)
    try:
        consumer.wait_ready(probe)
        time.sleep(0.5)
        # Warm-up: connections, Lua script, imports, caches.
        warm = max(args.batch * len(channels), min(5000, args.messages // 10))
        pub, out = publish(args, url, key, channels, warm, 0.0)
        wait_count(probe, consumer, warm)
        pub.join()
        base = probe.count()
        flood = args.rate <= 0
        total = args.messages if flood else int(args.rate * args.duration)
        metrics_before = consumer.metrics()
        cpu0, emu_cpu0 = cpu_seconds(consumer.pid), cpu_seconds(emulator.pid)
        server = find_pid("beam.smp" if sink == "celery-amqp" else "redis-server 127.0.0.1:6379")
        server_cpu0 = cpu_seconds(server) if server else 0.0
        nodes_cpu0 = sum(cpu_seconds(p) for p in cluster_pids)
        since_ms = int(time.time() * 1000)
        spy = None
        if os.environ.get("BENCH_PYSPY"):  # py-spy record of the consumer over the run
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(consumer.pid),
                 "-o", os.environ["BENCH_PYSPY"], "-f", "raw", "--nonblocking",
                 "-r", os.environ.get("BENCH_PYSPY_RATE", "250"),
                 "--threads", *os.environ.get("BENCH_PYSPY_ARGS", "").split()],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
        pub, out = publish(args, url, key, channels, total, 0.0 if flood else args.rate)
        _, done, peak = wait_count(probe, consumer, base + total)
        cpu, emu_cpu = cpu_seconds(consumer.pid) - cpu0, cpu_seconds(emulator.pid) - emu_cpu0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        started, pub_done = out.get(timeout=60)
        pub.join()
        delivered = probe.count() - base
        elapsed = done - started
        result: dict[str, Any] = {
            "consumer": args.consumer,
            "sink": sink,
            "format": args.format,
            "channels": args.channels,
            "connections": args.connections,
            "batch": args.batch,
            "messages": total,
            "delivered": delivered,
            "rate": args.rate,
            "elapsed_s": round(elapsed, 3),
            "msg_per_s": round(delivered / elapsed),
            "publish_s": round(pub_done - started, 3),
            "cpu_us_per_msg": round(cpu / delivered * 1e6, 1),
            "cpu_util": round(cpu / elapsed, 2),
            "emulator_cpu_us_per_msg": round(emu_cpu / delivered * 1e6, 1),
            "rss_mb_peak": round(peak / 1024, 1),
        }
        if cluster_pids:
            nodes_cpu = sum(cpu_seconds(p) for p in cluster_pids) - nodes_cpu0
            result["server_cpu_us_per_msg"] = round(nodes_cpu / delivered * 1e6, 1)
        elif server:
            server_cpu = cpu_seconds(server) - server_cpu0
            result["server_cpu_us_per_msg"] = round(server_cpu / delivered * 1e6, 1)
        if not flood:
            if sink == "streams":
                ably, pub_lat = probe.stream_latencies(since_ms)
                result.update(
                    latency_n=len(ably),
                    p50_ms=quantile(ably, 0.5),
                    p99_ms=quantile(ably, 0.99),
                    max_ms=max(ably) if ably else None,
                    pub_p50_ms=round(quantile(pub_lat, 0.5), 2),
                    pub_p99_ms=round(quantile(pub_lat, 0.99), 2),
                )
            if args.consumer == "bridge":
                name = "ably_bridge_delivery_latency_seconds"
                before, after = histogram(metrics_before, name), histogram(consumer.metrics(), name)
                result.update(
                    hist_p50_ms=round(histogram_quantile(before, after, 0.5) * 1000, 1),
                    hist_p99_ms=round(histogram_quantile(before, after, 0.99) * 1000, 1),
                )
        return result
    finally:
        consumer.stop()
        probe.clear()
        probe.close()
        emulator.terminate()
        emulator.wait(timeout=10)


def main(argv: list[str] | None = None, consumer: str = "bridge") -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--consumer", choices=["bridge", "handwritten", "ceiling"], default=consumer
    )
    parser.add_argument(
        "--sink", choices=["streams", "celery-redis", "celery-amqp"], default="streams"
    )
    parser.add_argument(
        "--feed",
        choices=sorted(FEEDS),
        default="realistic",
        help="realistic: 1 message per frame over 1,000 channels and 5 connections (what a "
        "bridge mostly sees); batched: 50 per frame on 1 channel and 1 connection. "
        "--channels, --connections and --batch override it",
    )
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="bridge: channels_per_connection sharding; handwritten: realtime clients",
    )
    parser.add_argument(
        "--messages", type=int, default=50_000, help="flood mode: messages in total"
    )
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: flood)")
    parser.add_argument("--duration", type=float, default=20.0, help="rate mode: seconds")
    parser.add_argument(
        "--batch", type=int, default=None, help="messages per published ProtocolMessage"
    )
    parser.add_argument(
        "--window", type=int, default=50, help="un-ACKed ProtocolMessages in flight"
    )
    parser.add_argument("--size", type=int, default=100, help="payload characters")
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--batch-size", type=int, default=500, help="bridge delivery.batch_size")
    parser.add_argument(
        "--buffer-size", type=int, default=20_000, help="bridge delivery.buffer_size"
    )
    parser.add_argument(
        "--hw-mode",
        choices=["batched", "naive"],
        default="batched",
        help="handwritten: pipeline what is queued, or one await per message",
    )
    parser.add_argument(
        "--queue-type",
        choices=["classic", "quorum"],
        default="classic",
        help="celery-amqp: the RabbitMQ queue type (the target's queue_type)",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="streams: start a local 3-primary Redis Cluster and deliver into it",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    for name, value in FEEDS[args.feed].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
