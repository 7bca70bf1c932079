"""The whole bridge into a Redis Cluster (issue 21), and a primary failover while it delivers.

The bridge runs in a thread against the emulator, its ``REDIS_URL`` a
``redis+cluster://`` URL of a real cluster on loopback. The first test uses
the session's cluster: streams on every primary, checkpoints and shard leases
under the control tag, a presence snapshot. The second starts its own
3-primary, 3-replica cluster, SIGKILLs the primary that holds both a stream
and the control keys (checkpoints, leases, fencing tokens) while messages
flow, and checks every message id in every stream: each published message
exactly once, in order. With ``redis.wait_replicas: 1`` that is what the
guarantees promise (docs/delivery-guarantees.md): every batch the sink
confirmed was on the replica that took over, so nothing confirmed is lost,
and a checkpoint the dead primary lost only makes the bridge re-deliver what
the replicated dedup marks refuse.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import redis

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.emulator import Emulator
from tests.bridge.test_daemon_integration import (
    Running,
    bridge_config,
    message_ids,
    publish_n,
    rest_for,
)
from tests.cluster_support import LocalCluster
from tests.support.wait import eventually

CHANNELS = ["a", "b", "c", "d", "e", "f"]


def _routes(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "main",
            "channels": CHANNELS,
            "sources": ["message", "presence"],
            "presence_snapshot": {"key": prefix + ":presence:{channel}"},
            "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
        }
    ]


def _new_key(emulator: Emulator) -> tuple[str, str]:
    created = emulator.create_app({"keys": [{}]})
    return str(created["keys"][0]["keyStr"]), str(created["appId"])


def test_the_bridge_delivers_into_a_cluster(
    emulator: Emulator,
    redis_cluster: LocalCluster,
) -> None:
    key, app_id = _new_key(emulator)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    streams = [f"{prefix}:s:{c}" for c in CHANNELS]
    assert len({redis_cluster.primary_of(s) for s in streams}) == 3
    config = bridge_config(
        emulator, key, prefix, redis_url=redis_cluster.url, routes=_routes(prefix),
        sharding={"mode": "lease", "shards": 8, "lease_ttl": 3},
    )  # fmt: skip
    client = open_redis(redis_cluster.url)
    rest = rest_for(emulator, key)
    try:
        with Running(config) as run:
            run.wait_live()
            sent = {c: publish_n(rest, c, 10, "cl") for c in CHANNELS}
            for c, stream in zip(CHANNELS, streams, strict=True):
                eventually(lambda s=stream, c=c: message_ids(client, s) == sent[c], what=c)
            eventually(
                lambda: len(client.hgetall(f"{{{prefix}}}:checkpoint:main")) == len(CHANNELS),
                what="every channel's checkpoint",
            )
            # Leases and their fencing tokens live under the control tag too.
            assert client.get(f"{{{prefix}}}:shard:0:token") is not None
            assert run.app.checkpoints.fenced == 0
    finally:
        rest.close()
        client.close()
        emulator.delete_app(app_id)


def _prefix_beside_a_stream(cluster: LocalCluster) -> tuple[str, int]:
    """A prefix whose control tag and stream ``a`` share a primary: the victim."""
    while True:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        victim = cluster.primary_of(f"{prefix}:s:a")
        if cluster.primary_of(f"{{{prefix}}}") == victim:
            return prefix, victim


def test_a_primary_killed_while_the_bridge_delivers_loses_and_doubles_nothing(
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(tmp_path).start()
    key, app_id = _new_key(emulator)
    prefix, victim = _prefix_beside_a_stream(cluster)
    config = bridge_config(
        emulator, key, prefix, redis_url=cluster.url, routes=_routes(prefix),
        redis={"url": cluster.url, "key_prefix": prefix, "wait_replicas": 1, "wait_timeout": 1},
    )  # fmt: skip
    rest = rest_for(emulator, key)
    sent: dict[str, list[str]] = {c: [] for c in CHANNELS}
    half = threading.Event()
    go_on = threading.Event()
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            for round_ in range(10):
                for c in CHANNELS:
                    sent[c] += publish_n(rest, c, 10, f"r{round_}")
                if round_ == 3:
                    half.set()
                    go_on.wait(60)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    client: redis.Redis | None = None
    try:
        with Running(config) as run:
            run.wait_live()
            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            assert half.wait(60), "the publisher stalled"
            cluster.kill(victim)  # while rounds 0-3 are still being delivered
            go_on.set()  # and rounds 4-9 are published during the failover
            cluster.wait_promoted(victim)
            cluster.restart(victim)  # back as the new primary's replica: WAIT can succeed
            publisher.join(60)
            assert not failures, failures
            client = open_redis(cluster.url)
            for c in CHANNELS:
                stream = f"{prefix}:s:{c}"
                eventually(
                    lambda s=stream, c=c: len(message_ids(client, s)) >= len(sent[c]),
                    timeout=60, what=f"{c}: every message",
                )  # fmt: skip
            # The failover was felt (batches retried), and nothing was given up on.
            assert run.app.metrics.retries.total() > 0
            assert run.app.metrics.dead_letters.total() == 0
        assert client is not None
        for c in CHANNELS:  # after the bridge stopped: nothing more arrives
            got = message_ids(client, f"{prefix}:s:{c}")
            lost = set(sent[c]) - set(got)
            doubled = len(got) - len(set(got))
            assert (lost, doubled) == (set(), 0), (c, sorted(lost), doubled)
            assert got == sent[c]
    finally:
        rest.close()
        if client is not None:
            client.close()
        emulator.delete_app(app_id)
        cluster.stop()
