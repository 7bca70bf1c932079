"""The whole bridge against the emulator, real Redis and the realtime client.

Each test gets a fresh emulator app and a unique Redis key prefix on the shared
Redis (deleted afterwards). The bridge runs in a thread (``BridgeApp.run``);
tests wait with deadlines, never with fixed sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from ably_bridge.bridge.app import BridgeApp
from ably_bridge.bridge.config import BridgeConfig, parse_config
from ably_bridge.emulator import Emulator
from ably_bridge.encoding.crypto import get_default_params
from ably_bridge.protocol.models import Message
from ably_bridge.rest.client import AblyRest
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL, redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

CIPHER_KEY = base64.b64encode(bytes(range(16))).decode()


def bridge_config(
    emulator: Emulator,
    key: str,
    prefix: str,
    *,
    redis_url: str = REDIS_URL,
    routes: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> BridgeConfig:
    raw: dict[str, Any] = {
        "ably": {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        "redis": {"url": redis_url, "key_prefix": prefix},
        "dead_letter": {"stream": f"{prefix}:deadletter"},
        "health": {"port": 0},
        "delivery": {"retry": {"initial": 0.1, "max_delay": 0.5, "jitter": 0}, "drain_timeout": 5},
        "routes": routes
        or [
            {
                "id": "main",
                "channels": ["a", "b", "c", "secret"],
                "sources": ["message", "presence", "lifecycle"],
                "ciphers": [{"channels": ["secret"], "key_env": "TEST_CIPHER"}],
                "presence_snapshot": {"key": prefix + ":presence:{channel}"},
                "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
            }
        ],
        **extra,
    }
    return parse_config(raw, {"ABLY_KEY": key, "TEST_CIPHER": CIPHER_KEY, **(env or {})})


class Running:
    """A BridgeApp on a thread."""

    def __init__(self, config: BridgeConfig) -> None:
        self.app = BridgeApp(config)
        self.thread = threading.Thread(target=self.app.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def wait_live(self, timeout: float = 15.0) -> None:
        eventually(lambda: self.app.daemon.readiness()[0], timeout, "bridge ready")

    def stop(self) -> None:
        self.app.daemon.request_stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


def stream_events(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    return [
        json.loads(fields[b"envelope"])
        for _, fields in client.xrange(stream)  # type: ignore[union-attr]
    ]


def message_ids(client: redis.Redis, stream: str) -> list[str]:
    return [
        e["messages"][0]["id"]
        for e in stream_events(client, stream)
        if e["source"] == "channel.message"
    ]


def rest_for(emulator: Emulator, key: str) -> AblyRest:
    return AblyRest(
        key=key, endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip


def publish_n(rest: AblyRest, channel: str, n: int, tag: str) -> list[str]:
    ids = [f"{tag}-{channel}-{i}" for i in range(n)]
    for i in range(0, n, 50):
        rest.channels.get(channel).publish(
            messages=[Message("e", {"i": j}, id=ids[j]) for j in range(i, min(n, i + 50))]
        )
    return ids


# ---------------------------------------------------------------------------


class WorkerQuiet:
    """Tells when a Celery worker has finished every task queued before a marker.

    Each recorded task counts itself in flight while it runs; :meth:`wait`
    queues a marker task behind everything the bridge sent and waits until it
    ran with no task in flight. With the bridge stopped, nothing can run after
    that: a duplicate would have run already (a signal, not a fixed sleep).
    """

    def __init__(self, worker_app: Any, rclient: redis.Redis, prefix: str, name: str) -> None:
        self.rclient = rclient
        self.inflight = f"{prefix}:inflight"
        self.done = f"{prefix}:marker-ran"
        self.name = f"{name}.marker"

        @worker_app.task(name=self.name)  # type: ignore[untyped-decorator]
        def marker() -> None:
            rclient.set(self.done, 1)

        self.app = worker_app

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Wrap a recorded task's body: in flight while it runs."""
        self.rclient.incr(self.inflight)
        try:
            yield
        finally:
            self.rclient.decr(self.inflight)

    def wait(self, queue: str) -> None:
        self.app.send_task(self.name, queue=queue)
        eventually(
            lambda: self.rclient.get(self.done) and int(self.rclient.get(self.inflight) or 0) == 0,
            timeout=30,
            what="the marker task behind every bridged task",
        )


def test_end_to_end_messages_presence_lifecycle_and_encryption(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    from ably_bridge.realtime import AblyRealtime

    config = bridge_config(emulator, key, prefix)
    rest = rest_for(emulator, key)
    with Running(config) as run:
        run.wait_live()
        health = run.app.health
        assert health is not None
        ready = requests.get(health.url + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        sent = {ch: publish_n(rest, ch, 20, "e2e") for ch in ("a", "b", "c")}
        secret = rest.channels.get("secret", cipher={"key": base64.b64decode(CIPHER_KEY)})
        secret.publish("s", {"top": "secret"}, id="secret-1")
        member = AblyRealtime(
            key=key, client_id="alice", endpoint="127.0.0.1", port=emulator.port, tls=False,
            insecure_allow_basic_over_http=True,
        )  # fmt: skip
        try:
            member.channels.get("a").presence.enter({"hello": 1}, timeout=10)
            for ch in ("a", "b", "c"):
                stream = f"{prefix}:s:{ch}"
                eventually(
                    lambda s=stream, c=ch: message_ids(rclient, s) == sent[c], what=f"{ch} events"
                )
            eventually(
                lambda: any(
                    e["source"] == "channel.presence"
                    for e in stream_events(rclient, f"{prefix}:s:a")
                ),
                what="presence event",
            )
            eventually(lambda: len(rclient.hgetall(f"{prefix}:presence:a")) == 1, what="snapshot")
        finally:
            member.close()
        eventually(lambda: len(message_ids(rclient, f"{prefix}:s:secret")) == 1, what="secret")
        env = stream_events(rclient, f"{prefix}:s:secret")
        item = next(e for e in env if e["source"] == "channel.message")["messages"][0]
        assert item["data"] == {"top": "secret"} and "encoding" not in item
        lifecycle = [
            e["name"]
            for e in stream_events(rclient, f"{prefix}:s:a")
            if e["source"] == "channel.lifecycle"
        ]
        assert "channel.attached" in lifecycle
        envelope = stream_events(rclient, f"{prefix}:s:a")
        first = next(e for e in envelope if e["source"] == "channel.message")
        assert first["appId"] == config.app_id and first["ruleId"] == "main"
        metrics = requests.get(health.url + "/metrics", timeout=5).text
        assert "ably_bridge_events_delivered_total" in metrics
        # a member leaving empties the snapshot (presence leave delay is 300 ms)
        eventually(lambda: not rclient.hgetall(f"{prefix}:presence:a"), what="snapshot emptied")
    rest.close()


def test_encoded_and_decoded_routes_of_one_live_encrypted_channel(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    """``data: encoded`` keeps the wire encoding of live events; ``decoded`` decrypts."""
    routes = [
        {
            "id": mode,
            "channels": ["vault"],
            "data": mode,
            "ciphers": [{"channels": ["vault"], "key_env": "TEST_CIPHER"}],
            "targets": [{"type": "redis_stream", "key": prefix + ":" + mode}],
        }
        for mode in ("decoded", "encoded")
    ]
    config = bridge_config(emulator, key, prefix, routes=routes)
    rest = rest_for(emulator, key)
    with Running(config) as run:
        run.wait_live()
        vault = rest.channels.get("vault", cipher={"key": base64.b64decode(CIPHER_KEY)})
        vault.publish("s", {"top": "secret"}, id="vault-1")  # after the attach: a live event
        for mode in ("decoded", "encoded"):
            eventually(
                lambda m=mode: message_ids(rclient, f"{prefix}:{m}") == ["vault-1"],
                what=f"{mode} route",
            )
    rest.close()
    (decoded,) = stream_events(rclient, f"{prefix}:decoded")
    (encoded,) = stream_events(rclient, f"{prefix}:encoded")
    assert decoded["messages"][0]["data"] == {"top": "secret"}
    assert "encoding" not in decoded["messages"][0]
    item = encoded["messages"][0]
    assert item["encoding"] == "json/utf-8/cipher+aes-128-cbc/base64"
    wire = Message.from_encoded(item, get_default_params(key=base64.b64decode(CIPHER_KEY)))
    assert wire.data == {"top": "secret"}


def test_restart_closes_the_gap_from_history_exactly_once(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    config = bridge_config(emulator, key, prefix)
    rest = rest_for(emulator, key)
    stream = f"{prefix}:s:a"
    with Running(config) as run:
        run.wait_live()
        first = publish_n(rest, "a", 30, "r1")
        eventually(lambda: message_ids(rclient, stream) == first, what="first batch")
    down = publish_n(rest, "a", 40, "down")
    with Running(config) as run:
        run.wait_live()
        after = publish_n(rest, "a", 10, "r2")
        eventually(lambda: message_ids(rclient, stream) == first + down + after, what="all")
        assert run.app.metrics.backfilled.value() == 40
    rest.close()


@pytest.mark.parametrize("fault", ["drop", "forget"])
def test_connection_faults_lose_nothing(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, fault: str, app: dict[str, Any]
) -> None:
    config = bridge_config(emulator, key, prefix)
    rest = rest_for(emulator, key)
    stream = f"{prefix}:s:b"
    sent: list[str] = []
    with Running(config) as run:
        run.wait_live()
        for round_no in range(4):
            sent += publish_n(rest, "b", 25, f"{fault}{round_no}")
            if fault == "drop":
                emulator.faults.drop_connections(app_id=app["appId"])
            else:
                emulator.faults.forget_connections(app_id=app["appId"])
            sent += publish_n(rest, "b", 25, f"{fault}{round_no}x")
        eventually(lambda: message_ids(rclient, stream) == sent, timeout=30, what="all messages")
    rest.close()


@pytest.mark.parametrize(
    "outage", [0.0, pytest.param(30.0, marks=pytest.mark.slow)], ids=["short", "30s"]
)
def test_redis_outage_pauses_then_backfills(
    emulator: Emulator, key: str, prefix: str, durable_redis: PrivateRedis, outage: float
) -> None:
    private_redis = durable_redis
    config = bridge_config(
        emulator,
        key,
        prefix,
        redis_url=private_redis.url,
        delivery={
            "buffer_size": 30,
            "drain_timeout": 5,
            "retry": {"initial": 0.1, "max_delay": 0.3, "jitter": 0},
        },
    )
    client = redis.Redis.from_url(private_redis.url)
    rest = rest_for(emulator, key)
    stream = f"{prefix}:s:c"
    with Running(config) as run:
        run.wait_live()
        sent = publish_n(rest, "c", 10, "pre")
        eventually(lambda: message_ids(client, stream) == sent, what="before outage")
        private_redis.stop()
        sent += publish_n(rest, "c", 100, "during")
        eventually(lambda: run.app.metrics.pauses.value() >= 1, what="pause")
        if outage:
            deadline = time.monotonic() + outage
            while time.monotonic() < deadline:  # keep publishing through the outage
                sent += publish_n(rest, "c", 5, f"outage{len(sent)}")
                time.sleep(0.5)
            assert not run.app.daemon.readiness()[0]
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        sent += publish_n(rest, "c", 10, "post")
        eventually(lambda: message_ids(client, stream) == sent, timeout=30, what="catch-up")
        run.wait_live()
    rest.close()


def test_bad_input_is_dead_lettered_and_the_bridge_keeps_running(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    config = bridge_config(emulator, key, prefix, delivery={"max_event_bytes": 2048})
    rest = rest_for(emulator, key)
    with Running(config) as run:
        run.wait_live()
        wrong = rest.channels.get("secret", cipher={"key": os.urandom(16)})
        wrong.publish("s", "wrong key", id="bad-cipher")
        rest.channels.get("a").publish("big", "x" * 5000, id="too-big")
        ok = publish_n(rest, "a", 3, "ok")
        eventually(lambda: message_ids(rclient, f"{prefix}:s:a") == ok, what="good events")
        eventually(lambda: rclient.xlen(f"{prefix}:deadletter") >= 2, what="dead letters")
        letters = {
            fields[b"event_id"].decode(): fields[b"reason"].decode()
            for _, fields in rclient.xrange(f"{prefix}:deadletter")
        }
        assert letters == {"bad-cipher": "undecodable", "too-big": "oversized"}
        assert run.app.daemon.readiness()[0]
    rest.close()


AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize("broker_kind", ["redis", "amqp"])
def test_celery_tasks_run_once_per_message_across_a_restart(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, broker_kind: str
) -> None:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from workers.guard import WorkerGuard

    broker = REDIS_URL if broker_kind == "redis" else AMQP_URL
    queue = f"{prefix}:celery"
    worker_app = Celery(f"bridge-e2e-{broker_kind}", broker=broker, set_as_current=False)
    worker_app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        broker_heartbeat=0,  # the embedded AMQP worker otherwise takes 10 s to stop
    )
    guard = WorkerGuard(redis.Redis.from_url(REDIS_URL), prefix=prefix)
    ran = f"{prefix}:ran"

    task_name = f"bridge_e2e.record.{broker_kind}"  # task names are process-wide in Celery

    quiet = WorkerQuiet(worker_app, rclient, prefix, task_name)

    @worker_app.task(bind=True, name=task_name)  # type: ignore[untyped-decorator]
    def record(self: Any, envelope: dict[str, Any]) -> None:
        with quiet.running(), guard.once(self.request.id) as first:
            if first:
                rclient.rpush(ran, envelope["messages"][0]["id"])

    routes = [
        {
            "id": "tasks",
            "channels": ["t1", "t2"],
            "targets": [
                {"type": "celery", "task": task_name, "queue": queue},
                {"type": "redis_stream", "key": prefix + ":s:{channel}"},
            ],
        }
    ]
    # A broker URL with a password comes from the environment, never the file.
    config = bridge_config(emulator, key, prefix, routes=routes, env={"CELERY_BROKER_URL": broker})
    rest = rest_for(emulator, key)
    sent: list[str] = []
    try:
        with start_worker(
            worker_app, pool="threads", concurrency=2, perform_ping_check=False, queues=[queue]
        ):
            with Running(config) as run:
                run.wait_live()
                sent += publish_n(rest, "t1", 15, "c1") + publish_n(rest, "t2", 15, "c1")
                eventually(lambda: rclient.llen(ran) >= 30, timeout=30, what="first tasks")
            sent += publish_n(rest, "t1", 10, "c2")
            with Running(config) as run:
                run.wait_live()
                sent += publish_n(rest, "t2", 10, "c3")
                eventually(lambda: rclient.llen(ran) >= len(sent), what="all tasks")
            quiet.wait(queue)  # a duplicate task, if any, has run by now
        ran_ids = [v.decode() for v in rclient.lrange(ran, 0, -1)]
        assert sorted(ran_ids) == sorted(sent)
    finally:
        rest.close()
        for k in rclient.scan_iter(match=f"_kombu.binding.{queue}*"):
            rclient.delete(k)
        if broker_kind == "amqp":
            with worker_app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)


def test_celery_broker_outage_loses_and_duplicates_no_task(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis,
    durable_redis: PrivateRedis,
) -> None:  # fmt: skip
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from workers.guard import WorkerGuard

    broker = durable_redis.url
    queue = f"{prefix}:celery"
    routes = [
        {
            "id": "tasks",
            "channels": ["t"],
            "targets": [{"type": "celery", "task": "bridge_e2e.outage", "queue": queue}],
        }
    ]
    config = bridge_config(
        emulator, key, prefix, routes=routes, celery={"broker_url": broker},
        delivery={
            "buffer_size": 30,
            "drain_timeout": 5,
            "retry": {"initial": 0.1, "max_delay": 0.3, "jitter": 0},
        },
    )  # fmt: skip
    rest = rest_for(emulator, key)
    broker_client = redis.Redis.from_url(broker)
    with Running(config) as run:
        run.wait_live()
        sent = publish_n(rest, "t", 10, "before")
        eventually(lambda: broker_client.llen(queue) == 10, what="tasks queued")
        durable_redis.stop()
        sent += publish_n(rest, "t", 100, "during")
        eventually(lambda: run.app.metrics.pauses.value() >= 1, what="back-pressure")
        assert not run.app.daemon.readiness()[0]
        durable_redis.start()
        sent += publish_n(rest, "t", 10, "after")
        broker_client = redis.Redis.from_url(broker)
        eventually(lambda: broker_client.llen(queue) >= len(sent), timeout=30, what="catch-up")
        run.wait_live()
    worker_app = Celery("bridge-outage", broker=broker, set_as_current=False)
    worker_app.conf.update(task_serializer="json", accept_content=["json"], result_backend=None)
    guard = WorkerGuard(rclient, prefix=prefix)
    ran = f"{prefix}:ran"

    quiet = WorkerQuiet(worker_app, rclient, prefix, "bridge_e2e.outage")

    @worker_app.task(bind=True, name="bridge_e2e.outage")  # type: ignore[untyped-decorator]
    def outage(self: Any, envelope: dict[str, Any]) -> None:
        with quiet.running(), guard.once(self.request.id) as first:
            if first:
                rclient.rpush(ran, envelope["messages"][0]["id"])

    with start_worker(
        worker_app, pool="threads", concurrency=2, perform_ping_check=False, queues=[queue]
    ):
        eventually(lambda: broker_client.llen(queue) == 0, timeout=30, what="queue drained")
        eventually(lambda: rclient.llen(ran) >= len(sent), what="tasks ran")
        quiet.wait(queue)  # a duplicate task, if any, has run by now
    assert sorted(v.decode() for v in rclient.lrange(ran, 0, -1)) == sorted(sent)
    rest.close()
