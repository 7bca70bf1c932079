"""A black-box chaos run of the real bridge process under overlapping faults, from one seed.

This module owns one run (:func:`run`): the processes, the fault schedule
(:class:`Plan`, drawn from the seed) and the checker (:func:`check`).

The processes, all on 127.0.0.1 and all its own:

* three ``redis-server`` instances on free ports: the *stream* Redis
  (checkpoints, dedup marks, the Redis Stream; AOF on), the *broker* Redis
  (the Celery broker and the sink's push-once marks; AOF on) and the
  *results* Redis, where the worker writes down its executions (never
  faulted);
* the emulator (``python -m ably_bridge.emulator``);
* the bridge, ``ably-bridge run -c chaos.yaml`` (a route ``chaos:*`` found by
  prefix discovery, messages and presence, into one Redis Stream and one
  Celery task);
* a Celery worker (:mod:`.worker_app`, solo pool: executions in queue order).

This process publishes over REST (``--rate`` messages a second round-robin
over ``--channels`` channels, which start one after another so that most
are discovered mid-run) and drives presence (members entering, updating and
leaving on a few channels through realtime clients of their own), while the
:class:`Plan` fires: SIGKILLs of the bridge (restarted after 1-3 s), a
SIGSTOP of the stream Redis, a shutdown and restart of the stream Redis, a
broker outage, two dropped bridge connections and one forgotten connection
(no resume) through the emulator's fault API. Faults overlap freely.

Then everything recovers and the checker reads both sinks: lost (published,
not delivered), duplicated after de-duplication (a stream entry twice; a
message under two task ids), order inversions per channel, presence events
missing, and the worker's raw duplicate executions (a task id run again) per
10,000 messages. ``scripts/chaos.py`` runs it for N seeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from ably_bridge import AblyRealtime, AblyRest
from ably_bridge.envelope import SOURCE_MESSAGE, SOURCE_PRESENCE
from ably_bridge.protocol.models import Message
from tests.support.services import free_port
from workers.app import atomic_fetch_transport

ROOT = Path(__file__).resolve().parents[3]
STREAM = "chaos:events"
QUEUE = "chaos"
TASK = "chaos.record"
EXECUTIONS = "chaos:executions"


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the plan ------------------------------------------------------------------------------
@dataclass
class Plan:
    """What one seed does: sizes and the fault times (seconds from the first publish)."""

    seed: int
    duration: float = 60.0  # publishing time
    rate: float = 50.0  # messages a second, all channels together
    channels: int = 10
    presence_channels: int = 3
    kills: list[tuple[float, float]] = field(default_factory=list)  # (at, down for)
    stream_sigstop: tuple[float, float] = (0.0, 0.0)  # (at, for)
    stream_restart: tuple[float, float] = (0.0, 0.0)  # (at, down for)
    broker_outage: tuple[float, float] = (0.0, 0.0)  # (at, down for)
    drops: list[float] = field(default_factory=list)
    forget: float = 0.0

    @classmethod
    def draw(
        cls,
        seed: int,
        *,
        duration: float = 60.0,
        rate: float = 50.0,
        channels: int = 10,
        kills: int = 3,
        sigstop: float = 10.0,
        broker_down: float = 10.0,
    ) -> Plan:
        rng = random.Random(seed)
        d = duration
        kill_times: list[tuple[float, float]] = []
        at = rng.uniform(0.08, 0.2) * d
        for _ in range(kills):
            if at > 0.9 * d:
                break
            kill_times.append((round(at, 2), round(rng.uniform(1.0, 3.0), 2)))
            at += rng.uniform(0.12, 0.3) * d
        # SIGSTOP in one half, shutdown+restart in the other (a stopped server cannot shut down).
        first, second = (0.05, 0.45), (0.55, 0.85)
        if rng.random() < 0.5:
            first, second = second, first
        stop_at = rng.uniform(*first) * d
        restart_at = rng.uniform(*second) * d
        return cls(
            seed=seed,
            duration=duration,
            rate=rate,
            channels=channels,
            presence_channels=min(3, channels),
            kills=kill_times,
            stream_sigstop=(round(stop_at, 2), round(rng.uniform(0.7, 1.3) * sigstop, 2)),
            stream_restart=(round(restart_at, 2), round(rng.uniform(2.0, 5.0), 2)),
            broker_outage=(
                round(rng.uniform(0.1, 0.8) * d, 2),
                round(rng.uniform(0.7, 1.3) * broker_down, 2),
            ),
            drops=sorted(round(rng.uniform(0.1, 0.9) * d, 2) for _ in range(2)),
            forget=round(rng.uniform(0.1, 0.9) * d, 2),
        )

    def channel_name(self, i: int) -> str:
        return f"chaos:{self.seed}:{i:02d}"

    def channel_start(self, i: int) -> float:
        """Channel i starts publishing here: most channels are new to the bridge mid-run."""
        return 0.0 if i == 0 else (i / self.channels) * 0.6 * self.duration


# -- processes -----------------------------------------------------------------------------
class RedisServer:
    """A redis-server of the run on a fixed port; may be stopped, restarted, SIGSTOPped."""

    def __init__(self, name: str, workdir: Path, *, aof: bool) -> None:
        self.name = name
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not on the PATH")
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.dir), "--appendonly", "yes" if self.aof else "no",
                "--appendfsync", "always"]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} redis-server did not start")
            time.sleep(0.05)
        client.close()

    def shutdown(self) -> None:
        if self.proc is not None:
            if self.stopped:
                self.cont()
            self.proc.terminate()  # SIGTERM: redis-server flushes its AOF and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def sigstop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.stopped = True

    def cont(self) -> None:
        if self.proc is not None and self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False


class Child:
    """A Python child process (emulator, bridge, worker) with a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n==== start #{self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


# -- the run -------------------------------------------------------------------------------
@dataclass
class Published:
    messages: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    presence: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # channel -> [(marker, action, clientId)]
    errors: int = 0


class World:
    """The processes of one run and the faults applied to them."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.stream = RedisServer("stream-redis", workdir, aof=True)
        self.broker = RedisServer("broker-redis", workdir, aof=True)
        self.results = RedisServer("results-redis", workdir, aof=False)
        self.emulator: Child | None = None
        self.bridge: Child | None = None
        self.worker: Child | None = None
        self.key = ""
        self.app_id = ""
        self.emulator_port = 0
        self.health_port = free_port()
        self.events: list[str] = []
        self.lock = threading.Lock()

    def note(self, what: str) -> None:
        with self.lock:
            self.events.append(f"{time.monotonic():.2f} {what}")
        log(what)

    # -- start / stop ------------------------------------------------------------------
    def start(self) -> None:
        for server in (self.stream, self.broker, self.results):
            server.start()
        keys = self.workdir / "keys.json"
        env = self._env()
        self.emulator = Child(
            "emulator",
            [sys.executable, "-m", "ably_bridge.emulator", "--port", "0", "--log-level",
             "WARNING", "--keys-file", str(keys)],
            self.workdir / "emulator.log", env,
        )  # fmt: skip
        self.emulator.start()
        wait_until("the emulator", lambda: keys.read_text().strip().endswith("}"), 60)
        info = json.loads(keys.read_text())
        self.key = str(info["keys"][0])
        self.app_id = self.key.split(".", 1)[0]
        self.emulator_port = int(str(info["endpoint"]).rstrip("/").rsplit(":", 1)[1])
        config = self._write_config()
        env = self._env()
        env.update(ABLY_KEY=self.key, CHAOS_BROKER_URL=self.broker.url,
                   CHAOS_RESULTS_URL=self.results.url)  # fmt: skip
        self.worker = Child(
            "worker",
            [sys.executable, "-m", "celery", "-A", "tests.bridge.chaos.worker_app", "worker",
             "--pool", "solo", "-Q", QUEUE, "--loglevel", "WARNING", "-n",
             f"chaos-{self.plan.seed}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            self.workdir / "worker.log", env,
        )  # fmt: skip
        self.worker.start()
        self.bridge = Child(
            "bridge",
            [sys.executable, "-m", "ably_bridge.cli", "run", "-c", str(config)],
            self.workdir / "bridge.log",
            env,
        )
        self.bridge.start()
        self.wait_bridge_ready(90)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ABLY_", "CELERY_"))}
        if "ABLY_BRIDGE_NO_SHORTCUTS" in os.environ:  # the public paths, bridge and worker
            env["ABLY_BRIDGE_NO_SHORTCUTS"] = os.environ["ABLY_BRIDGE_NO_SHORTCUTS"]
        env.pop("REDIS_URL", None)
        env["PYTHONPATH"] = str(ROOT)
        return env

    def _write_config(self) -> Path:
        config = {
            "site": "chaos",
            "log_level": "INFO",
            "log_format": "text",
            "ably": {"endpoint": "127.0.0.1", "port": self.emulator_port, "tls": False},
            "redis": {"url": self.stream.url, "key_prefix": "chaos"},
            "celery": {"broker_url": self.broker.url},
            "delivery": {
                "drain_timeout": 5,
                "retry": {"initial": 0.2, "multiplier": 2.0, "max_delay": 2, "jitter": 0.5},
            },
            "dead_letter": {"stream": "chaos:deadletter", "maxlen": 100000},
            "health": {"host": "127.0.0.1", "port": self.health_port},
            "routes": [
                {
                    "id": "chaos",
                    "channels": ["chaos:*"],
                    "discover": {"prefixes": ["chaos:"], "interval": 2},
                    "sources": ["message", "presence"],
                    "targets": [
                        {"type": "redis_stream", "key": STREAM},
                        {"type": "celery", "task": TASK, "queue": QUEUE},
                    ],
                }
            ],
        }
        path = self.workdir / "chaos.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    def wait_bridge_ready(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.health_port}/readyz"

        def ready() -> bool:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)

        wait_until("the bridge's /readyz", ready, timeout)

    def in_flight(self) -> int:
        """What could still reach a sink: the deliveries the bridge buffers plus the tasks
        the broker holds (queued or unacknowledged). Raises while the bridge is not
        ready (a channel attaching or backfilling may still send) or a count is unreadable.
        """
        base = f"http://127.0.0.1:{self.health_port}"
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            assert response.status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=2) as response:
            metrics = response.read().decode()
        depth = re.search(r"^ably_bridge_buffer_depth (\S+)$", metrics, re.M)
        assert depth is not None
        queued, unacked = _left_in_broker(self)
        assert queued >= 0
        return int(float(depth.group(1))) + queued + unacked

    def close(self) -> None:
        for server in (self.stream, self.broker):
            with contextlib.suppress(Exception):
                server.cont()
        for child in (self.bridge, self.worker, self.emulator):
            if child is not None:
                with contextlib.suppress(Exception):
                    child.stop()
        for server in (self.stream, self.broker, self.results):
            with contextlib.suppress(Exception):
                server.shutdown()

    # -- faults ------------------------------------------------------------------------
    def kill_bridge(self, down: float) -> None:
        assert self.bridge is not None
        self.bridge.kill()
        self.note(f"bridge SIGKILLed (restart in {down}s)")
        time.sleep(down)
        self.bridge.start()
        self.note("bridge restarted")

    def stream_sigstop(self, seconds: float) -> None:
        self.stream.sigstop()
        self.note(f"stream redis SIGSTOP for {seconds}s")
        time.sleep(seconds)
        self.stream.cont()
        self.note("stream redis SIGCONT")

    def stream_restart(self, down: float) -> None:
        self.stream.shutdown()
        self.note(f"stream redis shut down (AOF) for {down}s")
        time.sleep(down)
        self.stream.start()
        self.note("stream redis restarted")

    def broker_outage(self, down: float) -> None:
        self.broker.shutdown()
        self.note(f"broker redis shut down for {down}s")
        time.sleep(down)
        self.broker.start()
        self.note("broker redis restarted")

    def bridge_connections(self) -> list[str]:
        rows = http_json(
            f"http://127.0.0.1:{self.emulator_port}/_emulator/connections?app_id={self.app_id}"
        )
        return [r["connectionId"] for r in rows if r.get("active") and not r.get("clientId")]

    def connection_fault(self, name: str) -> None:
        ids = self.bridge_connections()
        affected = 0
        for connection_id in ids:
            answer = http_json(
                f"http://127.0.0.1:{self.emulator_port}/_emulator/faults/{name}",
                {"connection_id": connection_id},
            )
            affected += int((answer or {}).get("affected", 0))
        self.note(f"emulator {name}: {affected} bridge connection(s)")


class Publisher:
    """Publishes the plan's messages over REST and drives presence on a few channels."""

    def __init__(self, world: World, published: Published) -> None:
        self.world = world
        self.plan = world.plan
        self.published = published
        self.stop = threading.Event()

    def rest(self) -> Any:
        return AblyRest(
            key=self.world.key, endpoint="127.0.0.1", port=self.world.emulator_port, tls=False,
            fallback_hosts=[], http_request_timeout=10.0,
        )  # fmt: skip

    def run_messages(self, started: float) -> None:
        plan = self.plan
        rest = self.rest()
        tick = 0.5
        per_channel = plan.rate * tick / plan.channels
        owed = [0.0] * plan.channels
        seq = [0] * plan.channels
        n = 0
        while True:
            now = time.monotonic() - started
            if now >= plan.duration:
                break
            for i in range(plan.channels):
                if now < plan.channel_start(i):
                    continue
                owed[i] += per_channel
                count = int(owed[i])
                if count <= 0:
                    continue
                owed[i] -= count
                name = plan.channel_name(i)
                batch = []
                for _ in range(count):
                    seq[i] += 1
                    batch.append(Message("m", {"seq": seq[i]}, id=f"{name}:{seq[i]}"))
                for attempt in range(100):  # same ids: the emulator keeps one of each
                    try:
                        rest.channels.get(name).publish(messages=batch)
                        break
                    except Exception as exc:
                        if self.published.errors == 0:
                            log(f"publish to {name} failed (retrying): {exc!r}")
                        self.published.errors += 1
                        time.sleep(min(1.0, 0.05 * (attempt + 1)))
                else:
                    raise RuntimeError(f"could not publish to {name}")
                self.published.messages[name].extend(str(m.id) for m in batch)
                n += count
            time.sleep(max(0.0, tick - ((time.monotonic() - started) - now)))
        log(f"published {n} messages on {plan.channels} channels")

    def run_presence(self, started: float, channel_index: int) -> None:
        """Two members on one channel enter, update and leave in turn until the end."""
        plan = self.plan
        name = plan.channel_name(channel_index)
        rng = random.Random(plan.seed * 1000 + channel_index)
        clients = []
        try:
            while time.monotonic() - started < plan.channel_start(channel_index) + 3.0:
                time.sleep(0.2)
            members = []
            for k in range(2):
                client_id = f"member-{channel_index}-{k}"
                client = AblyRealtime(
                    key=self.world.key, client_id=client_id, endpoint="127.0.0.1",
                    port=self.world.emulator_port, tls=False, use_binary_protocol=False,
                    realtime_request_timeout=10.0, http_request_timeout=10.0, fallback_hosts=[],
                )  # fmt: skip
                clients.append(client)
                members.append((client_id, client.channels.get(name), [False]))
            n = 0
            while time.monotonic() - started < plan.duration - 2 and not self.stop.is_set():
                client_id, channel, present = members[rng.randrange(len(members))]
                n += 1
                marker = f"{name}:p{n}"
                if not present[0]:
                    action = "enter"
                elif rng.random() < 0.4:
                    action = "update"
                else:
                    action = "leave"
                getattr(channel.presence, action)({"marker": marker})
                present[0] = action != "leave"
                self.published.presence[name].append((marker, action, client_id))
                time.sleep(rng.uniform(0.5, 2.0))
            for client_id, channel, present in members:
                if present[0]:
                    n += 1
                    marker = f"{name}:p{n}"
                    channel.presence.leave({"marker": marker})
                    self.published.presence[name].append((marker, "leave", client_id))
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    client.close(timeout=5.0)


def scheduled(plan: Plan, world: World) -> list[tuple[float, str, Callable[[], None]]]:
    """The plan's faults as (at, what, action), each run on a thread of its own."""
    out: list[tuple[float, str, Callable[[], None]]] = []
    for at, down in plan.kills:
        out.append((at, "kill", lambda down=down: world.kill_bridge(down)))
    at, dur = plan.stream_sigstop
    out.append((at, "sigstop", lambda: world.stream_sigstop(dur)))
    at2, down2 = plan.stream_restart
    out.append((at2, "stream-restart", lambda: world.stream_restart(down2)))
    at3, down3 = plan.broker_outage
    out.append((at3, "broker-outage", lambda: world.broker_outage(down3)))
    for at in plan.drops:
        out.append((at, "drop", lambda: world.connection_fault("drop_connections")))
    out.append((plan.forget, "forget", lambda: world.connection_fault("forget_connections")))
    return sorted(out, key=lambda item: item[0])


# -- the checker ---------------------------------------------------------------------------
def _seq(message_id: str) -> int:
    return int(message_id.rsplit(":", 1)[1])


def _inversions(ids: list[str]) -> int:
    seen: set[str] = set()
    last = 0
    out = 0
    for message_id in ids:
        if message_id in seen:
            continue
        seen.add(message_id)
        seq = _seq(message_id)
        if seq < last:
            out += 1
        last = max(last, seq)
    return out


@dataclass
class Report:
    seed: int
    published: int
    presence_events: int
    stream_lost: int
    stream_duplicated: int
    stream_inversions: int
    celery_lost: int
    celery_duplicated: int
    celery_inversions: int
    presence_lost_stream: int
    presence_lost_celery: int
    executions: int
    duplicate_executions: int
    dup_exec_per_10k: float
    celery_left_queued: int  # tasks still in the broker's queue at the end
    celery_left_unacked: int  # tasks in its unacked index (fetched, not acked) at the end
    worker_fetch: str  # the worker's broker transport: "atomic" or "kombu"
    seconds: float
    lost_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.stream_lost or self.stream_duplicated or self.stream_inversions
            or self.celery_lost or self.celery_duplicated or self.celery_inversions
            or self.presence_lost_stream or self.presence_lost_celery
        )  # fmt: skip

    def line(self) -> str:
        return "chaos " + json.dumps({"ok": self.ok, **asdict(self)})


def read_sinks(world: World) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stream_client = redis.Redis.from_url(world.stream.url, socket_timeout=30)
    entries: list[dict[str, Any]] = []
    last = "-"
    while True:
        batch = stream_client.xrange(STREAM, min=last, max="+", count=5000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            break
        for _entry_id, fields in batch:
            entries.append(json.loads(fields[b"envelope"]))
        last = batch[-1][0].decode()
    stream_client.close()
    results = redis.Redis.from_url(world.results.url, socket_timeout=30)
    rows = [json.loads(raw) for raw in results.lrange(EXECUTIONS, 0, -1)]
    results.close()
    return entries, rows


def _left_in_broker(world: World) -> tuple[int, int]:
    """(tasks in the queue, tasks in the unacked index) at the end; -1 when unreadable."""
    try:
        client = redis.Redis.from_url(world.broker.url, socket_timeout=10)
        left = int(client.llen(QUEUE)), int(client.hlen("unacked"))
        client.close()
    except redis.RedisError:
        return -1, -1
    return left


def _worker_fetch() -> str:
    return "kombu" if atomic_fetch_transport("redis://") is None else "atomic"


def check(plan: Plan, published: Published, world: World, seconds: float) -> Report:
    entries, rows = read_sinks(world)
    expected = {ch: list(ids) for ch, ids in published.messages.items()}
    total = sum(len(ids) for ids in expected.values())
    # the stream
    stream_ids: dict[str, list[str]] = defaultdict(list)
    stream_presence: set[str] = set()
    for env in entries:
        if env.get("source") == SOURCE_MESSAGE:
            stream_ids[env["channel"]].append(env["messages"][0].get("id"))
        elif env.get("source") == SOURCE_PRESENCE:
            data = env["presence"][0].get("data")
            if isinstance(data, dict) and "marker" in data:
                stream_presence.add(data["marker"])
    # celery
    celery_ids: dict[str, list[str]] = defaultdict(list)
    task_ids_of: dict[str, set[str]] = defaultdict(set)
    celery_presence: set[str] = set()
    runs = Counter(row["task"] for row in rows)
    first_rows = []
    seen_tasks: set[str] = set()
    for row in rows:
        if row["task"] in seen_tasks:
            continue
        seen_tasks.add(row["task"])
        first_rows.append(row)
    for row in first_rows:
        if row["source"] == SOURCE_MESSAGE:
            celery_ids[row["channel"]].append(row["id"])
            task_ids_of[row["id"]].add(row["task"])
        elif row["source"] == SOURCE_PRESENCE:
            data = row.get("data")
            if isinstance(data, dict) and "marker" in data:
                celery_presence.add(data["marker"])
    lost_stream = lost_celery = dup_stream = inv_stream = inv_celery = 0
    examples: list[str] = []
    for ch, ids in expected.items():
        got = stream_ids.get(ch, [])
        missing = set(ids) - set(got)
        lost_stream += len(missing)
        examples += sorted(missing, key=_seq)[:3]
        lost_celery += len(set(ids) - set(celery_ids.get(ch, [])))
        dup_stream += len(got) - len(set(got))
        inv_stream += _inversions(got)
        inv_celery += _inversions(celery_ids.get(ch, []))
    dup_celery = sum(1 for tasks in task_ids_of.values() if len(tasks) > 1)
    markers = {m for events in published.presence.values() for m, _, _ in events}
    dup_exec = sum(n - 1 for n in runs.values())
    queued, unacked = _left_in_broker(world)
    return Report(
        seed=plan.seed,
        published=total,
        presence_events=len(markers),
        stream_lost=lost_stream,
        stream_duplicated=dup_stream,
        stream_inversions=inv_stream,
        celery_lost=lost_celery,
        celery_duplicated=dup_celery,
        celery_inversions=inv_celery,
        presence_lost_stream=len(markers - stream_presence),
        presence_lost_celery=len(markers - celery_presence),
        executions=len(rows),
        duplicate_executions=dup_exec,
        dup_exec_per_10k=round(dup_exec * 10000 / max(1, total), 1),
        celery_left_queued=queued,
        celery_left_unacked=unacked,
        worker_fetch=_worker_fetch(),
        seconds=round(seconds, 1),
        lost_examples=examples[:10],
    )


def _delivered_all(world: World, published: Published) -> tuple[bool, int]:
    """(everything arrived in both sinks, how many entries and executions there are)."""
    entries, rows = read_sinks(world)
    want = {m for ids in published.messages.values() for m in ids}
    markers = {m for events in published.presence.values() for m, _, _ in events}
    got_stream = {e["messages"][0].get("id") for e in entries if e.get("source") == SOURCE_MESSAGE}
    got_celery = {r["id"] for r in rows if r["source"] == SOURCE_MESSAGE}
    got_p = {
        e["presence"][0]["data"]["marker"]
        for e in entries
        if e.get("source") == SOURCE_PRESENCE and isinstance(e["presence"][0].get("data"), dict)
    }
    got_pc = {
        r["data"]["marker"]
        for r in rows
        if r["source"] == SOURCE_PRESENCE and isinstance(r.get("data"), dict)
    }
    done = want <= got_stream and want <= got_celery and markers <= got_p and markers <= got_pc
    return done, len(entries) + len(rows)


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ably-chaos-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        else:
            log(f"logs kept in {path}")


def run(plan: Plan, *, settle: float = 45.0, keep: bool = False) -> Report:
    """One chaos run of ``plan``; returns its report (printed as one line too)."""
    log(f"seed {plan.seed}: {json.dumps(asdict(plan))}")
    started_run = time.monotonic()
    with workdir(keep) as path:
        world = World(plan, path)
        threads: list[threading.Thread] = []
        try:
            world.start()
            published = Published()
            publisher = Publisher(world, published)
            started = time.monotonic()
            threads.append(
                threading.Thread(target=publisher.run_messages, args=(started,), daemon=True)
            )
            for i in range(plan.presence_channels):
                threads.append(
                    threading.Thread(target=publisher.run_presence, args=(started, i), daemon=True)
                )
            for t in threads:
                t.start()
            faults = []
            for at, what, action in scheduled(plan, world):
                delay = at - (time.monotonic() - started)
                if delay > 0:
                    time.sleep(delay)

                def guarded(action: Callable[[], None] = action, what: str = what) -> None:
                    try:
                        action()
                    except Exception as exc:  # a fault that could not be applied is reported
                        world.note(f"fault {what} failed: {exc!r}")

                fault = threading.Thread(target=guarded, daemon=True)
                fault.start()
                faults.append(fault)
            for t in threads + faults:
                t.join(timeout=plan.duration + 120)
            assert world.bridge is not None
            if not world.bridge.alive():
                world.bridge.start()
            world.note("all faults over; waiting for the sinks to settle")
            # Wait until everything arrived, or nothing moved for 20 s (at most ``settle``).
            deadline = time.monotonic() + settle
            moved, last = time.monotonic(), -1
            while time.monotonic() < deadline and time.monotonic() - moved < 20:
                with contextlib.suppress(Exception):
                    done, count = _delivered_all(world, published)
                    if done:
                        break
                    if count != last:
                        moved, last = time.monotonic(), count
                time.sleep(1.0)
            # A late duplicate can only come from what is still in flight: wait until
            # nothing is, twice in a row (the solo worker acknowledges a task before it
            # runs it; the second look comes after that task's record was written).
            quiet = [0]

            def settled() -> bool:
                try:
                    idle = world.in_flight() == 0
                except Exception:
                    idle = False
                quiet[0] = quiet[0] + 1 if idle else 0
                return quiet[0] >= 2

            try:
                wait_until("nothing in flight", settled, 30.0)
            except RuntimeError:
                world.note("still in flight after 30 s; checking what arrived")
            report = check(plan, published, world, time.monotonic() - started_run)
            if keep:
                entries, rows = read_sinks(world)
                dump = {"stream": entries, "executions": rows, "published": published.messages,
                        "presence": published.presence}  # fmt: skip
                (path / "sinks.json").write_text(json.dumps(dump))
        finally:
            publisher_stop = locals().get("publisher")
            if publisher_stop is not None:
                publisher_stop.stop.set()
            world.close()
            if keep:
                (path / "events.txt").write_text("\n".join(world.events) + "\n")
    print(report.line(), flush=True)
    return report
