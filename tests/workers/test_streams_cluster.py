"""The stream consumer on a Redis Cluster (issue 21): streams on several nodes, dead letters."""

from __future__ import annotations

import uuid
from typing import Any

from redis.crc import key_slot

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.cluster_support import LocalCluster
from workers import StreamConfig, StreamConsumer, StreamEntry


def test_groups_on_streams_of_every_primary_read_ack_and_dead_letter(
    redis_cluster: LocalCluster,
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}"
    streams = [f"{prefix}:s{i}" for i in range(6)]
    assert len({redis_cluster.primary_of(s) for s in streams}) > 1
    client = open_redis(redis_cluster.url)
    build = EnvelopeBuilder("app", "local")
    ids: dict[str, str] = {}
    for i, stream in enumerate(streams):
        message = Message("n", "bad" if i == 0 else f"d{i}", id=f"c:{i}:0", timestamp=1)
        env = build.message("chan", message, "route")
        ids[stream] = client.xadd(stream, {"envelope": env.to_json()}).decode()
    seen: list[tuple[str, str]] = []

    def handle(entry: StreamEntry) -> None:
        if entry.events[0].data == "bad":
            raise ValueError("bad data")
        seen.append((entry.stream, entry.entry_id))

    dead = f"{prefix}:dead"
    assert key_slot(dead.encode()) != key_slot(streams[0].encode())
    config = StreamConfig(
        streams=streams, group="g", consumer="c1", max_deliveries=1, min_idle=0.0,
        dead_letter=dead,
    )  # fmt: skip
    consumer = StreamConsumer(client, handle, config)
    consumer.run_once(block=0.05)
    assert sorted(seen) == sorted((s, ids[s]) for s in streams[1:])
    # The failed entry comes back (taken over) and, past max_deliveries, is dead-lettered.
    for _ in range(5):
        consumer.run_once(block=0.01)
        if consumer.dead_lettered:
            break
    assert consumer.dead_lettered == 1
    ((_, fields),) = client.xrange(dead)
    letter: dict[Any, Any] = fields
    assert (
        letter[b"stream"].decode() == streams[0] and letter[b"entry_id"].decode() == ids[streams[0]]
    )
    assert all(client.xpending(s, "g")["pending"] == 0 for s in streams)
    client.close()
