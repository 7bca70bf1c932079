"""Fencing: a replica holding a stale shard token can neither XADD nor advance a checkpoint.

Against the shared Redis (unique key prefix): the Redis Streams sink's fenced
script, the checkpoint store's fenced compare-and-set, and the dispatcher's
handling of a fenced delivery (dropped, not dead-lettered, not remembered,
no checkpoint) and of a lost shard (its queued work forgotten).
"""

from __future__ import annotations

import random

import redis

from ably_bridge.bridge.checkpoint import CheckpointStore, Position
from ably_bridge.bridge.config import StreamTarget
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.fencing import Fence
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink
from ably_bridge.clock import FakeClock
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.bridge.daemon_fakes import make_config
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL


class Tokens:
    """A Fencing whose held tokens the test sets; token keys under the test prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.held: dict[str, int] = {}

    def key(self, channel: str) -> str:
        return f"{self.prefix}:shard:{channel}:token"

    def fence(self, channel: str) -> Fence:
        return Fence(self.key(channel), self.held.get(channel, 0))


def message(i: int) -> Message:
    return Message("e", i, id=f"m-{i}", serial=f"{i:08d}", timestamp=1_700_000_000_000 + i)


def test_a_stale_token_cannot_xadd(rclient: redis.Redis, prefix: str) -> None:
    tokens = Tokens(prefix)
    sink = RedisStreamSink(REDIS_URL, SinkOptions(key_prefix=prefix, fencing=tokens))
    target = StreamTarget(key=prefix + ":s:{channel}")
    builder = EnvelopeBuilder("app", "site")
    rclient.set(tokens.key("a"), 2)  # another replica took shard "a" over: token 2
    rclient.set(tokens.key("b"), 7)

    def delivery(channel: str, i: int, token: int) -> Delivery:
        env = builder.message(channel, message(i), "r1")
        return Delivery(env, target, Fence(tokens.key(channel), token))

    results = sink.deliver(
        [delivery("a", 1, 1), delivery("a", 2, 2), delivery("b", 3, 7), delivery("b", 4, 0)]
    )
    assert [r.outcome for r in results] == [
        Outcome.FENCED, Outcome.DELIVERED, Outcome.DELIVERED, Outcome.FENCED,
    ]  # fmt: skip
    assert rclient.xlen(f"{prefix}:s:a") == 1 and rclient.xlen(f"{prefix}:s:b") == 1
    # A fenced event left no dedup mark: its new owner writes it.
    again = sink.deliver([delivery("a", 1, 2)])
    assert again[0].outcome is Outcome.DELIVERED
    # Several channels (shards) in one stream: each event checked against its own token.
    shared = StreamTarget(key=prefix + ":all")
    mixed = [
        Delivery(builder.message("a", message(9), "r1"), shared, Fence(tokens.key("a"), 2)),
        Delivery(builder.message("b", message(9), "r1"), shared, Fence(tokens.key("b"), 6)),
    ]
    assert [r.outcome for r in sink.deliver(mixed)] == [Outcome.DELIVERED, Outcome.FENCED]
    sink.close()


def test_a_stale_token_cannot_advance_a_checkpoint(rclient: redis.Redis, prefix: str) -> None:
    tokens = Tokens(prefix)
    store = CheckpointStore(rclient, prefix=prefix, fencing=tokens)
    rclient.set(tokens.key("a"), 3)
    tokens.held["a"] = 3
    assert store.advance("r1", "a", Position(10, "m-10", "010"))
    assert not store.advance("r1", "a", Position(20, "m-20", "020"), Fence(tokens.key("a"), 2))
    tokens.held["a"] = 2  # this replica's view is stale
    assert not store.advance("r1", "a", Position(30, "m-30", "030"))
    assert store.advance_many("r1", {"a": Position(40, "m-40", "040")}) == {"a": False}
    assert store.load("r1", "a") == Position(10, "m-10", "010")
    assert store.fenced == 3
    assert store.advance_many(
        "r1", {"a": Position(50, "m-50", "050")}, {"a": Fence(tokens.key("a"), 3)}
    ) == {"a": True}
    # Without fencing the store behaves as before.
    plain = CheckpointStore(rclient, prefix=prefix)
    assert plain.advance("r1", "b", Position(1))


def test_a_fenced_save_of_many_channels_is_one_call_deciding_each_channel(
    private_redis: PrivateRedis,
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    tokens = Tokens("p")
    store = CheckpointStore(client, prefix="p", fencing=tokens)
    channels = [f"ch{i}" for i in range(600)]  # over two shards' keys (by parity), 2 calls
    for i, channel in enumerate(channels):
        tokens.held[channel] = 5
        client.set(tokens.key(channel), 5 if i % 3 else 4)  # every third: lease moved on
    store.advance_many("r", {"warm": Position(1)}, {"warm": Fence(tokens.key("ch1"), 5)})
    before = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
    positions = {ch: Position(100 + i, f"m-{i}", f"{i:08d}") for i, ch in enumerate(channels)}
    given = {ch: Fence(tokens.key(ch), 5) for ch in channels[:300]}  # the rest: current one
    moved = store.advance_many("r", positions, given)
    assert int(client.info("commandstats")["cmdstat_evalsha"]["calls"]) - before == 2
    assert moved == {ch: bool(i % 3) for i, ch in enumerate(channels)}
    assert store.fenced == 200
    saved = store.load_all("r")
    assert {ch for ch in saved if ch != "warm"} == {ch for ch, ok in moved.items() if ok}
    assert saved["ch1"] == positions["ch1"]
    # With a good token a checkpoint still moves forward only.
    back, ahead = Position(1, "m-0", "0"), Position(999, "m-x", "99999999")
    assert store.advance_many("r", {"ch1": back, "ch2": ahead}, given) == {
        "ch1": False,
        "ch2": True,
    }
    assert store.load("r", "ch1") == positions["ch1"]
    client.close()


def test_the_dispatcher_drops_fenced_deliveries_without_dead_letters(
    rclient: redis.Redis, prefix: str
) -> None:
    config = make_config(
        redis={"url": REDIS_URL},
        routes=[
            {"id": "r1", "channels": ["a"], "sources": ["message"],
             "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}]},
        ],
    )  # fmt: skip
    tokens = Tokens(prefix)
    clock = FakeClock()
    checkpoints = CheckpointStore(rclient, prefix=prefix, fencing=tokens)
    sink = RedisStreamSink(REDIS_URL, SinkOptions(key_prefix=prefix, fencing=tokens, clock=clock))
    letters: list[object] = []

    class Letters:
        def write_many(self, items: list[object]) -> int:
            letters.extend(items)
            return len(items)

    dispatcher = Dispatcher(
        config,
        sink_for=lambda _t: sink,
        dead_letters=Letters(),  # type: ignore[arg-type]
        checkpoints=checkpoints,
        clock=clock,
        rng=random.Random(0),
        fencing=tokens,
    )
    rclient.set(tokens.key("a"), 1)
    tokens.held["a"] = 1
    assert dispatcher.submit_messages("a", [message(1), message(2)])
    dispatcher.drain()
    assert checkpoints.load("r1", "a") == Position(1_700_000_000_002, "m-2", "00000002")

    # The shard moves on (token 2) while events accepted under token 1 wait.
    assert dispatcher.submit_messages("a", [message(3), message(4)])
    rclient.set(tokens.key("a"), 2)
    dispatcher.drain()
    assert dispatcher.stats.fenced == 2 and not letters
    assert rclient.xlen(f"{prefix}:s:a") == 2
    assert checkpoints.load("r1", "a") == Position(1_700_000_000_002, "m-2", "00000002")
    assert dispatcher.unsettled_channels() == set()
    # Regained (token 3): the backfill replays 3 and 4 - not skipped as "already done".
    rclient.set(tokens.key("a"), 3)
    tokens.held["a"] = 3
    assert dispatcher.submit_messages("a", [message(3), message(4)])
    dispatcher.drain()
    assert rclient.xlen(f"{prefix}:s:a") == 4
    assert checkpoints.load("r1", "a") == Position(1_700_000_000_004, "m-4", "00000004")

    # A lost shard: queued work is forgotten, nothing is written.
    sink_down = dispatcher.submit_messages("a", [message(5)])
    assert sink_down and dispatcher.pending() == 1
    assert dispatcher.unsettled_channels() == {"a"}
    assert dispatcher.forget_channels({"a"}) == 1
    dispatcher.drain()
    assert dispatcher.pending() == 0 and dispatcher.unsettled_channels() == set()
    assert rclient.xlen(f"{prefix}:s:a") == 4
    sink.close()
