"""Benchmark: our REST client against the official ``ably`` package's sync client.

Run: ``.venv/bin/python bench/rest_vs_official.py`` (``--format json``, ``--rounds 3``,
``--seconds``, ``--threads 1 8``, ``--profile ours-publish`` for a cProfile dump).

The emulator runs as ``python -m ably_bridge.emulator`` in its own process, so
its CPU is not charged to the clients. Both clients use token auth (the
official one refuses Basic auth over plain HTTP) and the same wire format, and
one client instance is shared by all threads (both are documented as usable
from several threads). Two operations, each for ``--seconds`` per cell:

* **publish**: ``channel.publish("m", <100-character string>)``, one message per
  request, each thread on its own channel;
* **history pages**: ``channel.history(limit=100)`` then ``next()`` through a
  channel holding ``--history`` messages (100 per page; every page decoded).

Prints operations per second (wall clock), client CPU per operation
(``time.process_time`` of this process, all threads) and the emulator's CPU per
operation (``/proc/<pid>/stat``), with the ratios ours / official.

Where the time goes, and what changed it, is in bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PAYLOAD = "x" * 100
EMULATOR_PID = [0]


@contextmanager
def emulator_process() -> Iterator[tuple[str, int, str]]:
    """``python -m ably_bridge.emulator --port 0`` in a child process: (host, port, root key)."""
    keys = Path(tempfile.mkdtemp(prefix="bench-rest-")) / "keys.json"
    command = [sys.executable, "-m", "ably_bridge.emulator", "--port", "0"]
    command += ["--log-level", "WARNING", "--keys-file", str(keys)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    EMULATOR_PID[0] = proc.pid
    try:
        deadline = time.monotonic() + 30
        info: dict[str, Any] | None = None
        while info is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            try:
                info = json.loads(keys.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
        url = urlsplit(str(info["endpoint"]))
        yield url.hostname or "127.0.0.1", int(url.port or 80), str(info["keys"][0])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ours(host: str, port: int, key: str, binary: bool) -> Any:
    from ably_bridge import AblyRest

    return AblyRest(
        key=key,
        endpoint=host,
        port=port,
        tls=False,
        use_binary_protocol=binary,
        use_token_auth=True,
    )


def official(host: str, port: int, key: str, binary: bool) -> Any:
    import logging

    from ably.sync import AblyRestSync

    logging.getLogger("ably").setLevel(logging.ERROR)  # rest_host is "deprecated"
    return AblyRestSync(
        key=key,
        rest_host=host,
        port=port,
        tls=False,
        use_binary_protocol=binary,
        use_token_auth=True,
    )


CLIENTS: dict[str, Callable[[str, int, str, bool], Any]] = {
    "ours": ours,
    "official": official,
}


def emulator_cpu() -> float:
    """utime + stime of the emulator process, in seconds (Linux)."""
    fields = Path(f"/proc/{EMULATOR_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish_op(client: Any, thread: int) -> Callable[[], int]:
    channel = client.channels.get(f"bench-publish-{thread}")

    def op() -> int:
        channel.publish("m", PAYLOAD)
        return 1

    return op


def history_op(client: Any, thread: int) -> Callable[[], int]:
    channel = client.channels.get("bench-history")

    def op() -> int:
        page = channel.history(limit=100)
        pages = 1
        while page.has_next():
            page = page.next()
            pages += 1
        return pages

    return op


OPS: dict[str, Callable[[Any, int], Callable[[], int]]] = {
    "publish": publish_op,
    "history": history_op,
}


@dataclass
class Cell:
    ops: int
    seconds: float
    cpu: float
    server_cpu: float

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.ops * 1e6

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.ops * 1e6


def run_cell(client: Any, operation: str, threads: int, seconds: float) -> Cell:
    """``threads`` threads call the operation on one shared client for ``seconds``."""
    ops = [OPS[operation](client, t) for t in range(threads)]
    for op in ops:  # warm-up: token, connections, channel objects
        op()
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        op = ops[index]
        start.wait()
        done = 0
        try:
            while time.perf_counter() < stop_at[0]:
                done += op()
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        counts[index] = done

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    server0, cpu0, t0 = emulator_cpu(), time.process_time(), time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for thread in workers:
        thread.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if errors:
        raise RuntimeError(f"{operation} x{threads} failed: {errors[0]!r}") from errors[0]
    return Cell(sum(counts), elapsed, cpu, emulator_cpu() - server0)


def seed_history(host: str, port: int, key: str, binary: bool, count: int) -> None:
    client = ours(host, port, key, binary)
    from ably_bridge.protocol.models import Message

    channel = client.channels.get("bench-history")
    for start in range(0, count, 100):
        channel.publish([Message("h", f"{i}:{PAYLOAD}") for i in range(start, start + 100)])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--history", type=int, default=1000, help="messages in the history")
    parser.add_argument("--ops", nargs="+", choices=list(OPS), default=list(OPS))
    parser.add_argument("--rounds", type=int, default=1, help="repeat, report the median")
    parser.add_argument(
        "--profile",
        metavar="CLIENT-OP",
        help="e.g. ours-publish: cProfile that cell at 1 thread and print the top functions",
    )
    args = parser.parse_args()
    binary = args.format == "msgpack"
    with emulator_process() as (host, port, key):
        seed_history(host, port, key, binary, args.history)
        if args.profile:
            name, operation = args.profile.split("-", 1)
            client = CLIENTS[name](host, port, key, binary)
            op = OPS[operation](client, 0)
            op()  # warm-up
            done, stop_at = 0, time.perf_counter() + args.seconds
            profiler = cProfile.Profile()  # in this thread: cProfile sees one thread only
            profiler.enable()
            while time.perf_counter() < stop_at:
                done += op()
            profiler.disable()
            print(f"{args.profile}: {done} operations in {args.seconds:g} s")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        runs: dict[tuple[str, str, int], list[Cell]] = {}
        for _ in range(args.rounds):  # clients alternate within a round
            for operation in args.ops:
                for threads in args.threads:
                    for name, factory in CLIENTS.items():
                        client = factory(host, port, key, binary)
                        try:
                            cell = run_cell(client, operation, threads, args.seconds)
                        finally:
                            client.close()
                        runs.setdefault((name, operation, threads), []).append(cell)
        # The median round of each cell by rate (the box is shared: single runs wander).
        results = {
            k: sorted(cells, key=lambda c: c.per_second)[len(cells) // 2]
            for k, cells in runs.items()
        }
        unit = {"publish": "publishes", "history": "pages"}
        print(
            f"format={args.format}, {args.seconds:g} s per cell, history of {args.history}, "
            f"median of {args.rounds} round(s)"
        )
        print(
            f"{'operation':<10}{'threads':>8}{'client':>14}{'ops/s':>9}{'vs official':>13}"
            f"{'CPU/op':>10}{'vs official':>13}{'emulator CPU/op':>17}"
        )
        for operation in args.ops:
            for threads in args.threads:
                base = results[("official", operation, threads)]
                for name in CLIENTS:
                    cell = results[(name, operation, threads)]
                    print(
                        f"{unit[operation]:<10}{threads:>8}{name:>14}{cell.per_second:>9,.0f}"
                        f"{cell.per_second / base.per_second:>12.2f}x"
                        f"{cell.cpu_us:>7.0f} us{base.cpu_us / cell.cpu_us:>12.2f}x"
                        f"{cell.server_us:>14.0f} us"
                    )


if __name__ == "__main__":
    main()
