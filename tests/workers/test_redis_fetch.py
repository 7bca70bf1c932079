"""workers.redis_fetch against kombu's own Redis transport, on a redis-server the test owns.

Differential: both transports deliver the same messages in the same order
(two queues, four priority levels, fetched through the event-loop path and
through ``basic_get``) and leave the same unacked entries, which ack and reject
clear the same way. Then the difference the transport exists for: a fetch
whose reply is never read (what a SIGKILL does) loses the message with kombu's
``BRPOP`` and leaves it in the unacked index with the atomic fetch, from where
kombu's own restore brings it back.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from ably_bridge import shortcuts
from tests.support.redis_server import PrivateRedis
from workers import WorkerSettings
from workers.app import atomic_fetch_transport, create_app

KOMBU = "redis"
ATOMIC = "workers.redis_fetch:Transport"
QUEUES = [Queue(name, Exchange(name), name, max_priority=9) for name in ("qa", "qb")]


@pytest.fixture
def client(durable_redis: PrivateRedis) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(durable_redis.url)
    yield r
    r.close()


def _connection(url: str, transport: str, **options: Any) -> Connection:
    return Connection(
        url, transport=transport, transport_options={"visibility_timeout": 60, **options}
    )


def _publish(url: str, count: int, prefix: str = "") -> None:
    with _connection(url, KOMBU, global_keyprefix=prefix) as conn, conn.channel() as ch:
        producer = Producer(ch)
        for i in range(count):
            queue = QUEUES[i % 2]
            producer.publish(
                {"i": i}, exchange=queue.exchange, routing_key=queue.name,
                declare=QUEUES, priority=(i * 7) % 10,
            )  # fmt: skip


def _unacked(client: redis.Redis, prefix: str = "") -> dict[int, tuple[str, str]]:
    """The unacked hash as {message i: (exchange, routing key)}, its index beside it."""
    entries = client.hgetall(prefix + "unacked")
    assert set(client.zrange(prefix + "unacked_index", 0, -1)) == set(entries)
    out = {}
    for tag, raw in entries.items():
        payload, exchange, routing_key = json.loads(raw)
        assert payload["properties"]["delivery_tag"] == tag.decode()
        body = json.loads(Connection(transport="memory").channel().decode_body(
            payload["body"], payload["properties"]["body_encoding"]))  # fmt: skip
        out[body["i"]] = (exchange, routing_key)
    return out


def _consume(url: str, transport: str, count: int, prefix: str = "") -> tuple[list[int], Any]:
    conn = _connection(url, transport, global_keyprefix=prefix)
    channel = conn.channel()
    got: list[int] = []
    consumer = Consumer(channel, QUEUES, callbacks=[lambda body, _m: got.append(body["i"])])
    consumer.consume()
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=1)
    return got, (conn, channel, consumer)


@pytest.mark.parametrize("prefix", ["", "tenant:"])
def test_both_transports_deliver_the_same_and_leave_the_same_unacked_entries(
    durable_redis: PrivateRedis, client: redis.Redis, prefix: str
) -> None:
    seen = {}
    for transport in (KOMBU, ATOMIC):
        _publish(durable_redis.url, 12, prefix)
        got, (conn, channel, consumer) = _consume(durable_redis.url, transport, 12, prefix)
        assert type(channel).__module__ == ("workers.redis_fetch" if transport == ATOMIC else
                                            "kombu.transport.redis")  # fmt: skip
        unacked = _unacked(client, prefix)
        assert sorted(unacked) == list(range(12))
        delivered = list(channel.qos._delivered.values())
        for message in delivered[:6]:
            message.ack()
        for message in delivered[6:]:
            message.reject(requeue=True)
        remaining = _unacked(client, prefix)
        requeued = sum(client.llen(k) for k in client.keys(prefix + "q*"))
        consumer.cancel()
        conn.close()
        seen[transport] = (got, unacked, remaining, requeued)
        client.flushdb()
    assert seen[KOMBU] == seen[ATOMIC]
    assert seen[ATOMIC][2] == {} and seen[ATOMIC][3] == 6


@pytest.mark.parametrize("no_ack", [False, True])
def test_basic_get_matches_kombu(
    durable_redis: PrivateRedis, client: redis.Redis, no_ack: bool
) -> None:
    results = {}
    for transport in (KOMBU, ATOMIC):
        _publish(durable_redis.url, 4)
        with _connection(durable_redis.url, transport) as conn, conn.channel() as channel:
            bodies = []
            for queue in ("qa", "qb", "qa", "qb", "qa"):
                message = channel.basic_get(queue, no_ack=no_ack)
                bodies.append(None if message is None else json.loads(message.body)["i"])
            results[transport] = (bodies, sorted(_unacked(client)))
            channel.qos._delivered.clear()  # (no restore at close: compare, then flush)
        client.flushdb()
    assert results[KOMBU] == results[ATOMIC]
    assert results[ATOMIC][1] == ([] if no_ack else [0, 1, 2, 3])


def _fetch_ran(url: str, transport: str, client: redis.Redis) -> tuple[Any, Any]:
    """A consumer of one published message whose fetch was sent and run by Redis, its
    reply not read yet: (connection, channel)."""
    _publish(url, 1)
    conn = _connection(url, transport)
    channel = conn.channel()
    Consumer(channel, [QUEUES[0]], callbacks=[lambda *_: None]).consume()
    conn.transport.cycle._register_BRPOP(channel)
    deadline = time.monotonic() + 5
    while client.llen("qa") and time.monotonic() < deadline:
        time.sleep(0.01)  # polling Redis until it ran the fetch
    return conn, channel


def test_a_fetch_whose_reply_is_never_read_loses_nothing(
    durable_redis: PrivateRedis, client: redis.Redis
) -> None:
    """What a SIGKILL after the fetch and before its reply is read does, per transport."""
    left = {}
    for transport in (KOMBU, ATOMIC):
        _, channel = _fetch_ran(durable_redis.url, transport, client)  # the fetch ran ...
        channel.client.connection.disconnect()  # ... and the worker dies unread
        channel.qos._delivered.clear()
        left[transport] = (client.llen("qa"), client.hlen("unacked"))
        if transport == ATOMIC:
            # kombu's restore of a dead worker's messages brings it back to the queue
            with _connection(durable_redis.url, KOMBU, visibility_timeout=0) as other:
                other.channel().qos.restore_visible(interval=1)
            assert client.llen("qa") == 1 and client.hlen("unacked") == 0
        client.flushdb()
    assert left == {KOMBU: (0, 0), ATOMIC: (0, 1)}


def test_a_fetch_whose_reply_the_broker_drops_is_delivered_after_the_reconnect(
    durable_redis: PrivateRedis, client: redis.Redis
) -> None:
    """The connection dies after Redis ran the fetch and before its reply is read (a broker
    shutdown does this; chaos seed 3 left such a message unacked): kombu's ``BRPOP`` lost
    the message; the atomic fetch holds it unacked, and the next fetch of the process -
    after the reconnect - puts it back and delivers it, not ``visibility_timeout`` later."""
    left = {}
    for transport in (KOMBU, ATOMIC):
        conn, channel = _fetch_ran(durable_redis.url, transport, client)  # the fetch ran ...
        sock = channel.client.connection._sock
        assert select.select([sock], [], [], 5)[0]
        sock.recv(1 << 16)  # ... its reply is lost on the way
        sock.shutdown(socket.SHUT_RDWR)  # with the connection
        with pytest.raises(redis.ConnectionError):
            channel._brpop_read()  # (what the event loop calls when the socket is readable)
        left[transport] = (client.llen("qa"), client.hlen("unacked"))
        conn.close()
        if transport == ATOMIC:
            got, (again, _, _) = _consume(durable_redis.url, ATOMIC, 1)
            assert got == [0]  # (the visibility timeout is 60 s)
            assert client.llen("qa") == 0 and client.hlen("unacked") == 1  # its new delivery
            again.close()
        client.flushdb()
    assert left == {KOMBU: (0, 0), ATOMIC: (0, 1)}


def test_a_message_the_closing_channel_could_not_restore_comes_back_at_the_next_fetch(
    durable_redis: PrivateRedis, client: redis.Redis
) -> None:
    """A worker holds a delivered, unacked message when its broker goes away (Celery drops
    what its prefork pool had not started yet): the channel's restore at close cannot
    reach the broker, and the process's next fetch after the reconnect restores it."""
    _publish(durable_redis.url, 1)
    got, (_, channel, _) = _consume(durable_redis.url, ATOMIC, 1)
    assert got == [0]
    durable_redis.kill()
    with pytest.raises(redis.ConnectionError):
        channel.close()
    durable_redis.start()
    assert (client.llen("qa"), client.hlen("unacked")) == (0, 1)  # kept unacked
    got, (again, _, _) = _consume(durable_redis.url, ATOMIC, 1)
    assert got == [0]  # (the visibility timeout is 60 s)
    again.close()


def test_the_app_takes_the_atomic_fetch_only_for_redis_and_inside_the_fence() -> None:
    assert atomic_fetch_transport("redis://h:1/0") == ATOMIC
    assert atomic_fetch_transport("rediss://h:1/0") == ATOMIC
    assert atomic_fetch_transport("sentinel://h:26379") == "workers.redis_fetch:SentinelTransport"
    assert atomic_fetch_transport("amqp://guest@h//") is None
    app = create_app(
        "fetch-fence", WorkerSettings(broker_url="redis://127.0.0.1:1/0"), register=False
    )
    assert app.conf.broker_transport == ATOMIC
    with shortcuts.public_paths():
        assert atomic_fetch_transport("redis://h:1/0") is None
        plain = create_app("fetch-public", WorkerSettings(broker_url="redis://127.0.0.1:1/0"),
                           register=False)  # fmt: skip
        assert plain.conf.broker_transport is None
