"""The bridge's Redis on a Redis Cluster (issue 21): URLs, the streams sink, the stores.

Everything here runs against the session's real 3-primary, 3-replica cluster
on loopback (the ``redis_cluster`` fixture): streams spread over the three
primaries, each stream's dedup keys in its slot, the control keys
(checkpoints, leases, watermark) under one tag.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from redis.crc import key_slot

from ably_bridge.bridge.checkpoint import CheckpointStore, Position
from ably_bridge.bridge.config import ConfigError, StreamTarget, parse_config
from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.bridge.fencing import Fence
from ably_bridge.bridge.presence_snapshot import PresenceSnapshot
from ably_bridge.bridge.redis_connect import ClusterSpec, open_redis, parse_cluster_url
from ably_bridge.bridge.redis_keys import is_cluster_client
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sharding import RedisLeaseStore
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions, create_sink
from ably_bridge.bridge.sinks.redis_cluster import ClusterStreamSink
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.shortcuts import public_paths
from tests.cluster_support import LocalCluster
from workers.guard import WorkerGuard

# -- the URL --------------------------------------------------------------------------------


def test_a_cluster_url_names_seed_nodes_and_credentials() -> None:
    spec = parse_cluster_url("redis+cluster://app:s3cret@10.0.0.1:7000,[::1],node-c:7002/")
    assert spec == ClusterSpec(
        nodes=(("10.0.0.1", 7000), ("::1", 6379), ("node-c", 7002)),
        username="app",
        password="s3cret",
    )
    assert "s3cret" not in repr(spec)
    assert parse_cluster_url("rediss+cluster://h:1").tls


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://h1:7000/3", "one database"),
        ("redis+cluster://h1:0", "1-65535"),
        ("redis+cluster://h1:7000,", "empty cluster node address"),
        ("redis+cluster://h1:7000/?x=1", "takes no parameters"),
    ],
)
def test_a_bad_cluster_url_is_refused_by_name(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cluster_url(url)


def test_check_config_takes_a_cluster_url_and_redacts_its_password() -> None:
    url = "redis+cluster://:pw-in-env@127.0.0.1:7000,127.0.0.1:7001/"
    route = {"id": "r", "channels": ["a"], "targets": [{"type": "redis_stream", "key": "s"}]}
    config = parse_config({"routes": [route]}, {"ABLY_KEY": "app.key:secret", "REDIS_URL": url})
    assert config.redis_url.reveal() == url
    assert "pw-in-env" not in redact_url(url) and "7001" in redact_url(url)
    with pytest.raises(ConfigError, match="key_prefix: must not contain braces on a Redis Cluster"):
        parse_config(
            {"redis": {"key_prefix": "{mine}"}, "routes": [route]},
            {"ABLY_KEY": "app.key:secret", "REDIS_URL": url},
        )
    with pytest.raises(ConfigError, match="REDIS_URL: a Redis Cluster has one database"):
        parse_config(
            {"routes": [route]},
            {"ABLY_KEY": "app.key:secret", "REDIS_URL": "redis+cluster://h:7000/2"},
        )


# -- the streams sink -------------------------------------------------------------------------


def _deliveries(prefix: str, channels: list[str], count: int) -> list[Delivery]:
    target = StreamTarget(key=prefix + ":{channel}")
    build = EnvelopeBuilder("app", "local")
    out = []
    for channel in channels:
        for i in range(count):
            message = Message("m", {"n": i}, id=f"{channel}-c:{i}:0", timestamp=1_000 + i)
            out.append(Delivery(build.message(channel, message, "r"), target))
    return out


def _ids(client: redis.Redis, stream: str) -> list[str]:
    return [json.loads(f[b"envelope"])["messages"][0]["id"] for _, f in client.xrange(stream)]


@pytest.mark.parametrize("raw", [True, False], ids=["shortcut", "public"])
def test_streams_over_three_primaries_written_once(redis_cluster: LocalCluster, raw: bool) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    channels = [f"ch{i}" for i in range(12)]
    streams = [f"{prefix}:{c}" for c in channels]
    assert len({redis_cluster.primary_of(s) for s in streams}) == 3  # every primary gets some
    options = SinkOptions(key_prefix=prefix)
    if raw:
        sink = create_sink("redis_stream", redis_cluster.url, options)
    else:
        with public_paths():
            sink = create_sink("redis_stream", redis_cluster.url, options)
    assert isinstance(sink, ClusterStreamSink)
    batch = _deliveries(prefix, channels, 5)
    try:
        assert {r.outcome for r in sink.deliver(batch)} == {Outcome.DELIVERED}
        assert {r.outcome for r in sink.deliver(batch)} == {Outcome.DUPLICATE}
        client = open_redis(redis_cluster.url)
        assert is_cluster_client(client)
        for channel, stream in zip(channels, streams, strict=True):
            assert _ids(client, stream) == [f"{channel}-c:{i}:0" for i in range(5)]
        # The dedup hashes sit with their stream, on its primary.
        for stream in streams:
            node = redis_cluster.node(redis_cluster.primary_of(stream))
            assert node.keys(f"{prefix}:dedup:{{{stream}}}:*")
        client.close()
    finally:
        sink.close()


def test_a_stale_fencing_token_is_refused_once_a_newer_one_wrote(
    redis_cluster: LocalCluster,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"

    class Tokens:
        token = 2

        def fence(self, channel: str) -> Fence:
            return Fence(f"{{{prefix}}}:shard:1:token", self.token)

    tokens = Tokens()
    sink = create_sink(
        "redis_stream", redis_cluster.url, SinkOptions(key_prefix=prefix, fencing=tokens)
    )
    try:
        first, second = _deliveries(prefix, ["a"], 2)
        fence = tokens.fence("a")
        new = Delivery(first.envelope, first.target, fence=fence)
        assert sink.deliver([new])[0].outcome is Outcome.DELIVERED
        stale = Delivery(second.envelope, second.target, fence=Fence(fence.key, 1))
        assert sink.deliver([stale])[0].outcome is Outcome.FENCED
        none = Delivery(second.envelope, second.target, fence=Fence(fence.key, 0))
        assert sink.deliver([none])[0].outcome is Outcome.FENCED
        newer = Delivery(second.envelope, second.target, fence=Fence(fence.key, 3))
        assert sink.deliver([newer])[0].outcome is Outcome.DELIVERED
        client = open_redis(redis_cluster.url)
        assert _ids(client, f"{prefix}:a") == ["a-c:0:0", "a-c:1:0"]
        client.close()
    finally:
        sink.close()


# -- the stores -------------------------------------------------------------------------------


def test_checkpoints_leases_and_fencing_share_the_control_slot(redis_cluster: LocalCluster) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    client = open_redis(redis_cluster.url)
    leases = RedisLeaseStore(client, prefix)
    assert leases.heartbeat("r1", 10_000) == ["r1"]
    got = leases.claim([0, 1, 2], "r1", 10_000, 3)
    assert sorted(got) == [0, 1, 2]
    assert leases.renew([0, 1, 2], "r1", 10_000) == got

    class Tokens:
        def fence(self, channel: str) -> Fence:
            return Fence(leases.token_key(1), got[1])

    store = CheckpointStore(client, prefix=prefix, fencing=Tokens())
    position = Position(id="a:1:0", serial="01", timestamp=5)
    assert store.advance_many("route", {"ch": position, "ch2": position}) == {
        "ch": True,
        "ch2": True,
    }
    assert store.load("route", "ch") == position
    # Another replica takes shard 1 over: the old token no longer moves the checkpoint.
    leases.release([1], "r1")
    (taken,) = leases.claim([1], "r2", 10_000, 1).items()
    assert taken[0] == 1 and taken[1] > got[1]
    later = Position(id="a:2:0", serial="02", timestamp=6)
    assert store.advance("route", "ch", later) is False and store.fenced == 1
    assert store.raise_watermark("all", 7) and store.load_watermark("all") == 7
    client.close()


def test_presence_snapshots_dead_letters_and_the_worker_guard(redis_cluster: LocalCluster) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    client = open_redis(redis_cluster.url)
    build = EnvelopeBuilder("app", "local")
    snapshot = PresenceSnapshot(client, key_template=prefix + ":presence:{channel}")
    members = [
        build.presence(
            f"room{i}",
            PresenceMessage(2, id=f"c:{i}:0", client_id=f"u{i}", connection_id="c", timestamp=5),
            "r",
        )
        for i in range(6)
    ]
    snapshot.apply(members)
    snapshot.replace("room0", members[:1])
    assert list(snapshot.members("room0")) == ["c:u0"]
    assert all(snapshot.members(f"room{i}") for i in range(6))
    dead = DeadLetterWriter(client, f"{prefix}:deadletter")
    event = _deliveries(prefix, ["x"], 1)[0].envelope
    assert dead.write(DeadLetter(Reason.REJECTED, "r", "x", event))
    assert client.xlen(f"{prefix}:deadletter") == 1
    guard = WorkerGuard(client, prefix=prefix)
    with guard.once("task-1") as first:
        assert first
    assert guard.is_done("task-1")
    client.close()


# -- resharding: ASK while a slot migrates, MOVED once it moved ------------------------------


def _node_id(cluster: LocalCluster, port: int) -> str:
    return str(cluster.node(port).execute_command("CLUSTER", "MYID").decode())


def test_a_slot_moved_under_the_sink_is_retried_then_written_once(
    redis_cluster: LocalCluster,
) -> None:
    """ASK during the migration and MOVED after it make the calls retry, never fail them;
    the replays find their dedup marks (moved with the slot), so each event is written once."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    prefix, template = f"{{{tag}}}", f"{{{{{tag}}}}}"  # streams {tag}:a: one slot for all
    src = redis_cluster.primary_of(prefix)
    dst = next(p for p in redis_cluster.primary_ports() if p != src)
    slot = int(key_slot(prefix.encode()))
    sink = create_sink("redis_stream", redis_cluster.url, SinkOptions(key_prefix="p"))
    first = _deliveries(template, ["a"], 3)
    try:
        assert {r.outcome for r in sink.deliver(first)} == {Outcome.DELIVERED}
        source, target = redis_cluster.node(src), redis_cluster.node(dst)
        target.execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(redis_cluster, src)
        )
        source.execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(redis_cluster, dst)
        )
        # A stream the source does not have (yet) in a migrating slot: ASK -> retried.
        new = _deliveries(template, ["b"], 1)
        assert [r.outcome for r in sink.deliver(new)] == [Outcome.RETRY]
        keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        source.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
        for port in redis_cluster.primary_ports():
            redis_cluster.node(port).execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", _node_id(redis_cluster, dst)
            )
        # The sink's map is stale: MOVED -> retried; the next attempt reaches the new owner.
        outcomes = [r.outcome for r in sink.deliver(first + new)]
        assert outcomes == [Outcome.RETRY] * 4, outcomes
        again = [r.outcome for r in sink.deliver(first + new)]
        assert again == [Outcome.DUPLICATE] * 3 + [Outcome.DELIVERED]  # marks moved too
        assert redis_cluster.primary_of(prefix) == dst
        client = open_redis(redis_cluster.url)
        assert _ids(client, f"{prefix}:a") == ["a-c:0:0", "a-c:1:0", "a-c:2:0"]
        assert _ids(client, f"{prefix}:b") == ["b-c:0:0"]
        client.close()
    finally:
        sink.close()
