"""Redis Streams sink against a real Redis: exactly-once writes, trimming, layouts, outages."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import redis

from ably_bridge.bridge.config import StreamTarget
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions, create_sink
from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink, retryable_redis_error
from ably_bridge.clock import FakeClock
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL

B = EnvelopeBuilder("appX", "test")


def envelopes(n: int, channel: str = "ch", route: str = "r", start: int = 0) -> list[Envelope]:
    return [
        B.message(channel, Message("evt", {"i": i}, id=f"conn:{i}:0", timestamp=1000 + i), route)
        for i in range(start, start + n)
    ]


def deliveries(envs: list[Envelope], target: StreamTarget) -> list[Delivery]:
    return [Delivery(e, target) for e in envs]


def sink_for(prefix: str, url: str = REDIS_URL, **kw: float) -> RedisStreamSink:
    return RedisStreamSink(url, SinkOptions(key_prefix=prefix, **kw))  # type: ignore[arg-type]


def outcomes(results: list) -> list[Outcome]:  # type: ignore[type-arg]
    return [r.outcome for r in results]


def test_each_event_written_once_across_replays(rclient: redis.Redis, prefix: str) -> None:
    sink = sink_for(prefix)
    target = StreamTarget(key=f"{prefix}:s:{{channel}}")
    batch = deliveries(envelopes(50), target)
    first = sink.deliver(batch)
    assert outcomes(first) == [Outcome.DELIVERED] * 50
    assert all(r.detail for r in first)
    again = sink.deliver(batch)
    assert outcomes(again) == [Outcome.DUPLICATE] * 50
    assert rclient.xlen(f"{prefix}:s:ch") == 50
    entries = rclient.xrange(f"{prefix}:s:ch")
    body = json.loads(entries[0][1][b"envelope"])
    assert body["source"] == "channel.message" and body["messages"][0]["id"] == "conn:0:0"
    assert [json.loads(e[1][b"envelope"])["messages"][0]["data"]["i"] for e in entries] == list(
        range(50)
    )
    sink.close()


def test_duplicates_inside_one_batch(rclient: redis.Redis, prefix: str) -> None:
    sink = sink_for(prefix)
    target = StreamTarget(key=f"{prefix}:s")
    env = envelopes(1)[0]
    results = sink.deliver([Delivery(env, target)] * 3)
    assert outcomes(results) == [Outcome.DELIVERED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert rclient.xlen(f"{prefix}:s") == 1


def test_concurrent_delivery_from_two_threads(rclient: redis.Redis, prefix: str) -> None:
    target = StreamTarget(key=f"{prefix}:s:{{channel}}")
    batch = deliveries(envelopes(300, channel="a") + envelopes(300, channel="b"), target)
    sinks = [sink_for(prefix), sink_for(prefix)]
    results: list[list[Outcome]] = [[], []]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        for start in range(0, len(batch), 50):
            results[i].extend(outcomes(sinks[i].deliver(batch[start : start + 50])))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    delivered = sum(o is Outcome.DELIVERED for r in results for o in r)
    duplicates = sum(o is Outcome.DUPLICATE for r in results for o in r)
    assert delivered == 600 and duplicates == 600
    assert rclient.xlen(f"{prefix}:s:a") == 300 and rclient.xlen(f"{prefix}:s:b") == 300


def test_routes_are_deduplicated_separately(rclient: redis.Redis, prefix: str) -> None:
    sink = sink_for(prefix)
    target = StreamTarget(key=f"{prefix}:shared")
    one = envelopes(5, route="r1")
    two = envelopes(5, route="r2")
    assert outcomes(sink.deliver(deliveries(one + two, target))) == [Outcome.DELIVERED] * 10
    assert rclient.xlen(f"{prefix}:shared") == 10


def test_maxlen_trimming(rclient: redis.Redis, prefix: str) -> None:
    sink = sink_for(prefix)
    approx = StreamTarget(key=f"{prefix}:approx", maxlen=10)
    exact = StreamTarget(key=f"{prefix}:exact", maxlen=10, approximate=False)
    envs = envelopes(1000)
    sink.deliver(deliveries(envs, approx))
    sink.deliver(deliveries(envs, exact))
    assert 10 <= rclient.xlen(f"{prefix}:approx") < 1000
    assert rclient.xlen(f"{prefix}:exact") == 10
    # Trimming does not forget dedup marks: a replay of trimmed events is not re-added.
    assert outcomes(sink.deliver(deliveries(envs[:5], exact))) == [Outcome.DUPLICATE] * 5


def test_flat_layout_and_key_placeholders(rclient: redis.Redis, prefix: str) -> None:
    sink = sink_for(prefix)
    target = StreamTarget(key=prefix + ":{app}:{route}:{source}:{channel}", layout="flat")
    env = B.message("c1", Message("n", {"k": 1}, id="x:1:0", client_id="bob", timestamp=7), "rt")
    (result,) = sink.deliver([Delivery(env, target)])
    assert result.outcome is Outcome.DELIVERED
    ((_, fields),) = rclient.xrange(f"{prefix}:appX:rt:message:c1")
    assert fields == {
        b"source": b"channel.message",
        b"appId": b"appX",
        b"channel": b"c1",
        b"site": b"test",
        b"ruleId": b"rt",
        b"timestamp": b"7",
        b"id": b"x:1:0",
        b"name": b"n",
        b"clientId": b"bob",
        b"data": b'{"k":1}',
        b"encoding": b"json",
    }


def test_dedup_marks_expire_with_time_buckets(rclient: redis.Redis, prefix: str) -> None:
    clock = FakeClock()
    sink = sink_for(prefix, clock=clock, dedup_ttl=60)  # type: ignore[arg-type]
    target = StreamTarget(key=f"{prefix}:s")
    batch = deliveries(envelopes(3), target)
    assert outcomes(sink.deliver(batch)) == [Outcome.DELIVERED] * 3
    clock.advance(61)  # next bucket: the previous one is still checked
    assert outcomes(sink.deliver(batch)) == [Outcome.DUPLICATE] * 3
    clock.advance(120)  # two buckets on: the mark is out of the window
    assert outcomes(sink.deliver(batch)) == [Outcome.DELIVERED] * 3
    marks = list(rclient.scan_iter(match=f"{prefix}:dedup:*"))
    assert marks and all(0 < rclient.ttl(k) <= 2 * 60 + 60 for k in marks)


def test_wrong_type_is_rejected_not_retried(rclient: redis.Redis, prefix: str) -> None:
    rclient.set(f"{prefix}:notastream", "x")
    sink = sink_for(prefix)
    good = StreamTarget(key=f"{prefix}:good")
    bad = StreamTarget(key=f"{prefix}:notastream")
    envs = envelopes(2)
    results = sink.deliver([Delivery(envs[0], bad), Delivery(envs[1], good)])
    assert outcomes(results) == [Outcome.REJECTED, Outcome.DELIVERED]
    assert results[0].error is not None and not sink.retryable(results[0].error)
    assert "WRONGTYPE" in str(results[0].error)


def test_a_bad_stream_fails_alone_among_many_in_one_call(rclient: redis.Redis, prefix: str) -> None:
    rclient.set(f"{prefix}:s:b", "x")
    sink = sink_for(prefix)
    target = StreamTarget(key=f"{prefix}:s:{{channel}}")
    batch = [
        Delivery(e, target)
        for ch in ("a", "b", "c")
        for e in envelopes(3, channel=ch, start=10 * ord(ch))
    ]
    results = outcomes(sink.deliver(batch))
    assert results == [Outcome.DELIVERED] * 3 + [Outcome.REJECTED] * 3 + [Outcome.DELIVERED] * 3
    assert rclient.xlen(f"{prefix}:s:a") == rclient.xlen(f"{prefix}:s:c") == 3
    # The bad stream wrote no marks: once it is a stream, its events go in.
    rclient.delete(f"{prefix}:s:b")
    again = outcomes(sink.deliver(batch))
    assert again == [Outcome.DUPLICATE] * 3 + [Outcome.DELIVERED] * 3 + [Outcome.DUPLICATE] * 3
    assert rclient.xlen(f"{prefix}:s:b") == 3


@pytest.mark.parametrize("layout", ["envelope", "flat"])
def test_a_stream_longer_than_a_call_is_split_in_order(
    rclient: redis.Redis, prefix: str, layout: str
) -> None:
    sink = sink_for(prefix)
    target = StreamTarget(key=f"{prefix}:s:{{channel}}", layout=layout)  # type: ignore[arg-type]
    batch = deliveries(envelopes(1100), target) + deliveries(envelopes(3, channel="x"), target)
    assert outcomes(sink.deliver(batch)) == [Outcome.DELIVERED] * 1103
    entries = rclient.xrange(f"{prefix}:s:ch")
    if layout == "flat":
        ids = [e[1][b"id"].decode() for e in entries]
    else:
        ids = [json.loads(e[1][b"envelope"])["messages"][0]["id"] for e in entries]
    assert ids == [f"conn:{i}:0" for i in range(1100)]
    assert rclient.xlen(f"{prefix}:s:x") == 3
    assert outcomes(sink.deliver(batch)) == [Outcome.DUPLICATE] * 1103


def test_streams_of_a_batch_share_script_calls(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    sink = sink_for("p", private_redis.url)
    target = StreamTarget(key="s:{channel}")
    # 1,000 events over 400 streams: two calls of at most 500 events (one stream's
    # events may be split between them, in order).
    batch = [
        Delivery(e, target)
        for i in range(400)
        for e in envelopes(1 if i % 2 else 4, channel=f"c{i}", start=i * 10)
    ]
    assert len(batch) == 1000
    client.config_resetstat()
    assert outcomes(sink.deliver(batch)) == [Outcome.DELIVERED] * 1000
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == 2
    assert client.xlen("s:c0") == 4 and client.xlen("s:c1") == 1
    assert [
        json.loads(e[1][b"envelope"])["messages"][0]["id"] for e in client.xrange("s:c398")
    ] == [f"conn:{3980 + k}:0" for k in range(4)]
    assert outcomes(sink.deliver(batch)) == [Outcome.DUPLICATE] * 1000
    marks = list(client.scan_iter(match="p:dedup:*"))
    assert len(marks) == 400 and all(client.ttl(k) > 0 for k in marks)


def test_error_classification() -> None:
    assert retryable_redis_error(redis.exceptions.ConnectionError("down"))
    assert retryable_redis_error(redis.exceptions.TimeoutError())
    assert retryable_redis_error(redis.exceptions.BusyLoadingError("LOADING"))
    assert retryable_redis_error(redis.exceptions.ResponseError("BUSY Redis is busy running"))
    assert retryable_redis_error(redis.exceptions.ResponseError("OOM command not allowed"))
    assert not retryable_redis_error(redis.exceptions.ResponseError("WRONGTYPE Operation"))
    assert not retryable_redis_error(redis.exceptions.ResponseError("ERR Error running script"))


def test_registry_by_scheme(prefix: str) -> None:
    sink = create_sink("redis_stream", REDIS_URL, SinkOptions(key_prefix=prefix))
    assert isinstance(sink, RedisStreamSink)
    with pytest.raises(ValueError, match="no redis_stream sink registered for URL scheme 'ftp'"):
        create_sink("redis_stream", "ftp://user:pw@h/")


# -- outages, against a private redis-server ---------------------------------------------


def test_outage_paused_server_then_resume_writes_nothing_twice(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    sink = sink_for("p", private_redis.url, socket_timeout=0.3)
    target = StreamTarget(key="s")
    assert outcomes(sink.deliver(deliveries(envelopes(10), target))) == [Outcome.DELIVERED] * 10
    batch = deliveries(envelopes(20, start=10), target)
    assert private_redis.proc is not None
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        assert not sink.healthy()
        results = sink.deliver(batch)
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)
    assert outcomes(results) == [Outcome.RETRY] * 20
    assert results[0].error is not None and sink.retryable(results[0].error)
    # The server may now run the commands it had buffered; a retry must not double them.
    deadline = time.monotonic() + 5
    while True:
        retry = sink.deliver(batch + deliveries(envelopes(10), target))
        if all(r.confirmed for r in retry) or time.monotonic() > deadline:
            break
    assert all(r.confirmed for r in retry)
    assert client.xlen("s") == 30
    assert sink.healthy()


def test_outage_stopped_server_then_restart(private_redis: PrivateRedis) -> None:
    sink = sink_for("p", private_redis.url, socket_timeout=0.5)
    target = StreamTarget(key="s")
    batch = deliveries(envelopes(10), target)
    private_redis.stop()
    started = time.monotonic()
    results = sink.deliver(batch)
    assert time.monotonic() - started < 3
    assert outcomes(results) == [Outcome.RETRY] * 10
    assert results[0].error is not None and sink.retryable(results[0].error)
    assert not sink.healthy()
    private_redis.start()
    assert outcomes(sink.deliver(batch)) == [Outcome.DELIVERED] * 10
    assert outcomes(sink.deliver(batch)) == [Outcome.DUPLICATE] * 10
    assert redis.Redis.from_url(private_redis.url).xlen("s") == 10


def test_script_cache_flush_is_recovered(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    sink = sink_for("p", private_redis.url)
    target = StreamTarget(key="s")
    assert outcomes(sink.deliver(deliveries(envelopes(3), target))) == [Outcome.DELIVERED] * 3
    client.script_flush()
    more = deliveries(envelopes(6), target)
    assert outcomes(sink.deliver(more)) == [Outcome.DUPLICATE] * 3 + [Outcome.DELIVERED] * 3
    assert client.xlen("s") == 6


@pytest.mark.parametrize("packer", ["hiredis", "python"])
def test_script_calls_are_packed_as_redis_py_packs_them(packer: str) -> None:
    from hiredis import pack_command  # (hiredis is a bridge dependency)

    from ably_bridge.bridge.sinks.resp import pack_commands as _pack

    conn = redis.Redis.from_url(REDIS_URL).connection_pool.make_connection()
    commands = [
        (
            "EVALSHA",
            "f" * 40,
            3,
            "s:ch\u00fc",
            "d:1",
            "d:0",
            0,
            "1",
            7260,
            "r|m:c:1:0",
            2,
            "envelope",
            '{"data":"\u6771\\u0000"}',
        ),
        ("EVALSHA", "f" * 40, 1, b"\x00\xff", -5, "x" * 70_000, 2**70),
        ("EVALSHA", "f" * 40, 1, "k", 1.5, 1e20, 1 / 3),  # (floats: repr, as redis-py)
    ]
    packed = _pack(conn, commands, pack_command if packer == "hiredis" else None)
    assert b"".join(packed) == b"".join(conn.pack_commands(commands))
