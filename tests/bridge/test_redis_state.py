"""Checkpoints, dead letters and presence snapshots against a real Redis."""

from __future__ import annotations

import json
import random
import threading
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ably_bridge.bridge.checkpoint import CheckpointStore, Position
from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.bridge.dedup import (
    TASK_ID_NAMESPACE,
    DedupWindow,
    celery_task_id,
)
from ably_bridge.bridge.presence_snapshot import PresenceSnapshot
from ably_bridge.clock import FakeClock
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message, PresenceMessage
from tests.support.redis_server import PrivateRedis

B = EnvelopeBuilder("appX", "test")

# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_moves_forward_only_by_timestamp(rclient: redis.Redis, prefix: str) -> None:
    store = CheckpointStore(rclient, prefix=prefix)
    assert store.load("r", "ch") is None
    assert store.advance("r", "ch", Position(1000, "a:1:0"))
    assert not store.advance("r", "ch", Position(999, "a:0:0"))  # older
    assert not store.advance("r", "ch", Position(1000, "a:1:0"))  # same event
    assert store.advance("r", "ch", Position(1000, "b:1:0"))  # same ms, another event
    assert store.advance("r", "ch", Position(2000, "a:2:0"))
    assert store.load("r", "ch") == Position(2000, "a:2:0")


def test_checkpoint_prefers_serial_order(rclient: redis.Redis, prefix: str) -> None:
    store = CheckpointStore(rclient, prefix=prefix)
    assert store.advance("r", "ch", Position(5000, "x", "01700000000005-000@a:000"))
    # A later serial wins even with an earlier timestamp (clock skew between publishers).
    assert store.advance("r", "ch", Position(4000, "y", "01700000000005-001@a:000"))
    assert not store.advance("r", "ch", Position(9000, "z", "01700000000004-999@a:000"))
    assert store.load("r", "ch") == Position(4000, "y", "01700000000005-001@a:000")


def test_presence_checkpoints_and_the_start_watermark_have_their_own_keys(
    rclient: redis.Redis, prefix: str
) -> None:
    from ably_bridge.bridge.core.position import presence_track

    store = CheckpointStore(rclient, prefix=prefix)
    assert store.advance(presence_track("r"), "ch", Position(5, "c:1:0"))
    assert store.load("r", "ch") is None  # the message checkpoint is apart
    assert rclient.hget(f"{prefix}:presence-checkpoint:r", "ch") is not None
    assert store.load_watermark("all") is None
    assert store.raise_watermark("all", 100) and store.load_watermark("all") == 100
    assert not store.raise_watermark("all", 50)  # never down
    assert store.load_watermark("all") == 100
    assert store.raise_watermark("all", 101) and store.load_watermark("all") == 101
    assert rclient.hget(f"{prefix}:start-watermark", "all") == b"101"


def test_checkpoint_load_all_and_batched_advance(rclient: redis.Redis, prefix: str) -> None:
    store = CheckpointStore(rclient, prefix=prefix)
    store.advance("r", "old", Position(50))
    moved = store.advance_many(
        "r", {"a": Position(1, "a1"), "b": Position(2, "b1"), "old": Position(10)}
    )
    assert moved == {"a": True, "b": True, "old": False}
    assert store.load_all("r") == {
        "a": Position(1, "a1"),
        "b": Position(2, "b1"),
        "old": Position(50),
    }
    assert store.load_all("other") == {}
    store.delete("r", "a")
    assert set(store.load_all("r")) == {"b", "old"}
    store.delete("r")
    assert store.load_all("r") == {}


def test_batched_advance_is_one_evalsha_and_survives_a_script_flush(
    private_redis: PrivateRedis,
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    store = CheckpointStore(client, prefix="cp")

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in
                ("evalsha", "script|exists", "script|load")}  # fmt: skip

    # First save: the server does not know the script; it is loaded and the save redone.
    assert store.advance_many("r", {"a": Position(1, "a1"), "b": Position(2, "b1")}) == {
        "a": True,
        "b": True,
    }
    before = calls()
    assert store.advance_many("r", {"a": Position(3, "a3")}) == {"a": True}
    after = calls()
    assert after["evalsha"] - before["evalsha"] == 1
    assert after["script|exists"] == before["script|exists"]  # no SCRIPT EXISTS first
    client.script_flush()
    assert store.advance_many("r", {"a": Position(2, "a2"), "b": Position(4, "b4")}) == {
        "a": False,
        "b": True,
    }
    assert calls()["script|load"] > after["script|load"]
    assert store.load_all("r") == {"a": Position(3, "a3"), "b": Position(4, "b4")}
    client.close()


def test_batched_advance_of_many_channels_decides_as_one_advance_each(
    private_redis: PrivateRedis,
) -> None:
    """One call per 500 channels, and each channel decided exactly as ``advance`` would."""
    client = redis.Redis.from_url(private_redis.url)
    store = CheckpointStore(client, prefix="cp")
    rng = random.Random(7)
    serial = "0170000000{:04d}-{:03d}@a:000".format
    before, after = {}, {}
    for i in range(1203):  # three calls: 500 + 500 + 203
        ts, n = rng.randrange(100), rng.randrange(3)
        name = f"ch{i}" if i % 7 else f'ch{i} "\u00fc\u6771\U0001f600\\'  # (JSON-escaped)
        before[name] = Position(ts, f"e{n}", serial(ts, n) if i % 2 else None)
        ts2, n2 = ts + rng.choice((-1, 0, 0, 1)), rng.randrange(3)
        after[name] = Position(ts2, f"e{n2}" if i % 5 else None, serial(ts2, n2) if i % 3 else None)
    for route in ("one", "many"):
        for channel, position in before.items():
            store.advance(route, channel, position)
    expected = {ch: store.advance("one", ch, position) for ch, position in after.items()}
    assert 100 < sum(expected.values()) < 1100  # both outcomes are exercised
    store.advance_many("warm", {"ch": Position(1)})  # (loads the script)
    calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    assert store.advance_many("many", after) == expected
    assert int(client.info("commandstats")["cmdstat_evalsha"]["calls"]) - calls == 3
    assert store.load_all("many") == store.load_all("one")
    client.close()


def test_checkpoint_concurrent_advances_keep_the_maximum(rclient: redis.Redis, prefix: str) -> None:
    store = CheckpointStore(rclient, prefix=prefix)

    def run(offset: int) -> None:
        for ts in range(offset, 400, 2):
            store.advance("r", "ch", Position(ts, f"id{ts}"))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert store.load("r", "ch") == Position(399, "id399")


# -- dead letters ------------------------------------------------------------------------------


def test_dead_letter_entries(rclient: redis.Redis, prefix: str) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    writer = DeadLetterWriter(rclient, f"{prefix}:dead", maxlen=100, clock=clock)
    env = B.message("ch", Message("n", "d", id="c:1:0", timestamp=1), "r1")
    raw = Message.from_dict({"id": "c:2:0", "data": "###", "encoding": "base64"})
    assert writer.write(DeadLetter(Reason.OVERSIZED, "r1", "ch", env, 40009, "too big"))
    assert writer.write(
        DeadLetter(Reason.UNDECODABLE, "r1", "ch", raw, 40013, "bad", "channel.message", "c:2:0")
    )
    entries = rclient.xrange(f"{prefix}:dead")
    first = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert first["reason"] == "oversized" and first["code"] == "40009"
    assert first["route"] == "r1" and first["channel"] == "ch" and first["event_id"] == "c:1:0"
    assert first["source"] == "channel.message" and first["time"] == "1700000000000"
    assert json.loads(first["event"]) == env.to_dict()
    second = {k.decode(): v.decode() for k, v in entries[1][1].items()}
    assert second["reason"] == "undecodable" and second["event_id"] == "c:2:0"
    assert json.loads(second["event"])["encoding"] == "base64"
    assert writer.written == 2 and writer.dropped == 0


def test_dead_letter_writer_never_raises() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    writer = DeadLetterWriter(dead, "x")
    letter = DeadLetter(Reason.REJECTED, "r", "c", object(), 0, "boom")
    assert writer.write(letter) is False
    assert writer.dropped == 1


# -- presence snapshots ------------------------------------------------------------------------


def presence(action: int, client: str, conn: str = "conn", data: str = "d", n: int = 0):  # type: ignore[no-untyped-def]
    msg = PresenceMessage(action, id=f"{conn}:{n}:0", client_id=client, connection_id=conn,
                          data=data, timestamp=1000 + n)  # fmt: skip
    return B.presence("room", msg, "r")


def test_presence_snapshot_tracks_members(rclient: redis.Redis, prefix: str) -> None:
    snap = PresenceSnapshot(rclient, key_template=prefix + ":presence:{route}:{channel}")
    snap.apply([presence(2, "alice", n=1), presence(2, "bob", n=2)])
    snap.apply([presence(4, "alice", data="away", n=3)])
    members = snap.members("room", "r")
    assert set(members) == {"conn:alice", "conn:bob"}
    assert json.loads(members["conn:alice"])["data"] == "away"
    snap.apply([presence(3, "bob", n=4)])
    assert set(snap.members("room", "r")) == {"conn:alice"}
    # End of SYNC: the full member list replaces the hash in one step.
    snap.replace("room", [presence(1, "carol", "c2"), presence(1, "dave", "c3")], "r")
    assert set(snap.members("room", "r")) == {"c2:carol", "c3:dave"}
    snap.replace("room", [], "r")
    assert snap.members("room", "r") == {}
    snap.apply([presence(2, "erin")])
    snap.clear("room", "r")
    assert snap.members("room", "r") == {}


# -- task ids and in-memory window ------------------------------------------------------------


def test_task_ids_are_deterministic() -> None:
    a = celery_task_id("route", "task.a", "m:c:1:0")
    assert a == celery_task_id("route", "task.a", "m:c:1:0")
    assert a != celery_task_id("route", "task.b", "m:c:1:0")
    assert a != celery_task_id("route2", "task.a", "m:c:1:0")
    # The id is uuid5(TASK_ID_NAMESPACE, "route:task:key"): workers and replays rely on it.
    for route, task, key in [
        ("route", "task.a", "m:c:1:0"),
        ("", "", ""),
        ("r\u00fc", "t\u6771.x", "p:\u00e9:9"),
        ("route", "task", "m:" + "x" * 500),
    ]:
        expected = uuid.uuid5(TASK_ID_NAMESPACE, f"{route}:{task}:{key}")
        assert celery_task_id(route, task, key) == str(expected)


def test_dedup_window_is_a_bounded_lru() -> None:
    window = DedupWindow(3)
    window.add_many(["a", "b", "c"])
    assert "a" in window  # touch: a is now most recent
    window.add("d")  # evicts b
    assert "b" not in window and "a" in window and "d" in window and len(window) == 3
    window.discard("a")
    assert "a" not in window
    assert "x" not in DedupWindow(0)


def test_dedup_window_seen_checks_many_keys_and_refreshes_them() -> None:
    window = DedupWindow(3)
    window.add_many(["a", "b", "c"])
    assert window.seen(["a", "x", "c"]) == {"a", "c"}  # a and c now most recent
    window.add("d")  # evicts b, the least recently seen
    assert window.seen(["a", "b", "c", "d"]) == {"a", "c", "d"}
    assert DedupWindow(0).seen(["a"]) == set()
