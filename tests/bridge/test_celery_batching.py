"""The Celery sink's batched publishing: Redis pipelines, AMQP confirms awaited per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.envelope import EnvelopeBuilder
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink, SenderAMQP, _Confirms
from ably_bridge.protocol.models import Message
from tests.bridge.conftest import redis_available
from tests.bridge.test_celery_sink import AMQP_BROKER, REDIS_BROKER, amqp_available

B = EnvelopeBuilder("appX", "test")


@pytest.fixture(params=[REDIS_BROKER, AMQP_BROKER], ids=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    url = str(request.param)
    if url.startswith("amqp") and not amqp_available():
        pytest.skip("RabbitMQ at 127.0.0.1:5672 is not running")
    if url.startswith("redis") and not redis_available(url):
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    return url


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    name = f"ably-bridge-batch-{uuid.uuid4().hex[:10]}"
    yield name
    cleanup = Celery("cleanup", broker=broker, set_as_current=False)
    try:
        with cleanup.connection_for_write() as conn:
            if broker.startswith("amqp"):
                conn.default_channel.queue_delete(name)
            else:
                client = redis.Redis.from_url(broker)
                client.delete(name, *client.keys(f"*{name}*"))
    finally:
        cleanup.close()


def queued(broker: str, name: str) -> int:
    app = Celery("count", broker=broker, set_as_current=False)
    try:
        with app.connection_for_write() as conn:
            if broker.startswith("amqp"):
                _, count, _ = conn.default_channel.queue_declare(name, passive=True)
                return int(count)
            return int(redis.Redis.from_url(broker).llen(name))
    finally:
        app.close()


def deliveries(target: CeleryTarget, start: int, n: int) -> list[Delivery]:
    return [
        Delivery(B.message("c", Message("n", f"d{i}", id=f"c:{i}:0", timestamp=1), "r"), target)
        for i in range(start, start + n)
    ]


@pytest.mark.timeout(60)
def test_batches_are_all_accepted_with_their_task_ids(broker: str, queue: str) -> None:
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.batch", queue=queue)
    try:
        for round_ in range(3):  # AMQP: the first batch learns the channel, later ones batch
            batch = deliveries(target, round_ * 25, 25)
            results = sink.deliver(batch)
            assert [r.outcome for r in results] == [Outcome.DELIVERED] * 25
            assert [r.detail for r in results] == [
                celery_task_id("r", target.task, d.envelope.dedup_key) for d in batch
            ]
        if broker.startswith("amqp"):  # every publish's ack was seen by the batch path
            assert [(c.settled, c.synced) for c in sink._channels.values()] == [(75, True)]
    finally:
        sink.close()
    assert queued(broker, queue) == 75


def test_confirms_track_acks_and_nacks() -> None:
    c = _Confirms()
    c.ack(3, True)
    assert c.settled == 3 and not c.nacked
    c.nack(6, True)  # 4..6 nacked at once
    assert c.settled == 6 and c.nacked == {4, 5, 6}
    c.ack(7, False)
    c.nack(9, False)
    assert c.settled == 9 and c.nacked == {4, 5, 6, 9}


def test_unconfirmed_and_nacked_publishes_are_retried_from_the_first() -> None:
    sink = CelerySink("memory://")
    c = _Confirms()
    c.ack(11, True)
    c.nack(12, False)
    results = [Result(Outcome.DELIVERED, f"t{i}") for i in range(4)]
    settled = sink._settle_tags(results, 1, [11, 12, 13], c, None)  # results[1:]: tags 11..13
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.RETRY]
    assert results[2].detail == "t2" and not c.nacked
    assert not settled  # tag 13 never settled: the channel's count is unknown now
    c.ack(13, False)
    results = [Result(Outcome.DELIVERED, "a"), Result(Outcome.DELIVERED, "b")]
    assert sink._settle_tags(results, 0, [12, 13], c, None)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    sink.close()


def test_argsrepr_is_a_cut_plain_repr() -> None:
    app = Celery("repr", broker="memory://", set_as_current=False, amqp=SenderAMQP)
    big = {"data": "x" * 5000}
    message = app.amqp.create_task_message("id", "t", (big,), {})
    headers = message.headers
    assert headers["argsrepr"] == repr((big,))[: app.amqp.argsrepr_maxsize - 3] + "..."
    assert headers["kwargsrepr"] == "{}"
    small = app.amqp.create_task_message("id", "t", ({"a": 1},), {"k": "v"}).headers
    assert small["argsrepr"] == "({'a': 1},)" and small["kwargsrepr"] == "{'k': 'v'}"
    app.close()
