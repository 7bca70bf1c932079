"""The key names: unchanged on one node, slot-correct on a cluster (issue 21)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from ably_bridge.bridge.dedup import stream_dedup_keys
from ably_bridge.bridge.redis_keys import RedisKeys, hash_tag, stream_tag
from ably_bridge.bridge.sinks.celery_redis import sent_mark


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_one_node_names_are_those_of_earlier_releases() -> None:
    keys = RedisKeys("ably-bridge")
    assert keys.checkpoint("r1") == "ably-bridge:checkpoint:r1"
    assert keys.presence_checkpoint("r1") == "ably-bridge:presence-checkpoint:r1"
    assert keys.start_watermark() == "ably-bridge:start-watermark"
    assert keys.shard_members() == "ably-bridge:shard:members"
    assert keys.shard_owner(7) == "ably-bridge:shard:7:owner"
    assert keys.shard_token(7) == "ably-bridge:shard:7:token"
    assert keys.stream_dedup("ably:s:chat", 12) == "ably-bridge:dedup:ably:s:chat:12"
    assert keys.stream_fence("ably:s:chat", "t") == "t"
    assert keys.task_done("id1") == "ably-bridge:task:done:id1"
    assert keys.task_lock("id1") == "ably-bridge:task:lock:id1"
    assert sent_mark("p", "q", "id") == "p:celery:sent:q:id"
    assert stream_dedup_keys("p", "s", 25.0, 10.0) == ("p:dedup:s:2", "p:dedup:s:1")


def test_hash_tag_follows_the_cluster_rule() -> None:
    assert hash_tag("a{b}c") == "b"
    assert hash_tag("a{b}c{d}") == "b"
    assert hash_tag("a{}b{c}") is None  # the first { decides; an empty tag hashes the key
    assert hash_tag("plain") is None
    assert hash_tag("a}b{c") is None
    assert stream_tag("ably:{chat}:x") == "chat"
    assert stream_tag("ably:chat") == "ably:chat"
    for odd in ("a{}b", "a}b", "x{"):
        assert slot(f"{{{stream_tag(odd)}}}") == slot(odd)


@pytest.mark.parametrize("stream", ["ably:s:chat", "ably:{room-1}", "x:{r}:y:z", "{t}", "a{}b"])
def test_cluster_data_keys_share_the_stream_slot(stream: str) -> None:
    keys = RedisKeys("ably-bridge", cluster=True)
    token = keys.shard_token(3)
    touched = [keys.stream_dedup(stream, 5), keys.stream_dedup(stream, 4)]
    touched.append(keys.stream_fence(stream, token))
    assert {slot(k) for k in touched} == {slot(stream)}


def test_cluster_control_keys_share_one_slot_and_tasks_spread() -> None:
    keys = RedisKeys("bridge", cluster=True)
    control = [keys.checkpoint("r"), keys.presence_checkpoint("r"), keys.start_watermark()]
    control += [keys.shard_members(), keys.shard_owner(1), keys.shard_token(63)]
    assert len({slot(k) for k in control}) == 1
    assert slot(keys.task_done("a")) == slot(keys.task_lock("a"))
    assert len({slot(keys.task_done(str(i))) for i in range(50)}) > 40


def test_cluster_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain braces"):
        RedisKeys("{mine}", cluster=True)
    assert RedisKeys("{mine}").checkpoint("r") == "{mine}:checkpoint:r"
