"""The Celery sink's batched publishing: Redis pipelines, AMQP confirms awaited per batch."""

from __future__ import annotations

from typing import Any

import kombu.pools
import pytest
import redis
from celery import Celery

from ably_bridge import shortcuts
from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.amqp_wire import Confirms
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink
from ably_bridge.bridge.sinks.celery_message import SenderAMQP
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.support.services import AMQP_BROKER

B = EnvelopeBuilder("appX", "test")


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
    learnt: list[int] = []
    try:
        for round_ in range(3):  # AMQP: the first batch learns the channel, later ones batch
            batch = deliveries(target, round_ * 25, 25)
            results = sink.deliver(batch)
            assert [r.outcome for r in results] == [Outcome.DELIVERED] * 25
            assert [r.detail for r in results] == [
                celery_task_id("r", target.task, d.envelope.dedup_key) for d in batch
            ]
            if round_ == 0:  # (a pooled channel may carry tags of an earlier sink's publishes)
                learnt = [c.settled for c in sink._channels.values()]
        if not shortcuts.enabled("amqp.pipelined_confirms"):
            assert not sink._channels  # the public path: each publish waited for its ack
        elif broker.startswith("amqp"):  # every publish's ack was seen by the batch path
            assert [(c.settled, c.synced) for c in sink._channels.values()] == [
                (learnt[0] + 50, True)
            ]
    finally:
        sink.close()
    assert queued(broker, queue) == 75


def test_confirms_track_acks_and_nacks() -> None:
    c = Confirms()
    c.ack(3, True)
    assert c.settled == 3 and not c.nacked
    c.nack(6, True)  # 4..6 nacked at once
    assert c.settled == 6 and c.nacked == {4, 5, 6}
    c.ack(7, False)
    c.nack(9, False)
    assert c.settled == 9 and c.nacked == {4, 5, 6, 9}


def test_unconfirmed_and_nacked_publishes_are_retried_from_the_first() -> None:
    sink = CelerySink("memory://")
    c = Confirms()
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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broker", [AMQP_BROKER], indirect=True, ids=["amqp"])
def test_amqp_batch_frames_go_out_in_few_writes(
    queue: str, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amqp.transport import _AbstractTransport

    writes: list[int] = []
    counting_on = False
    write = _AbstractTransport.write

    def counting(self: Any, s: Any) -> None:
        if counting_on:
            writes.append(len(s))
        write(self, s)

    # In place before the sink connects: py-amqp's own frame writer binds it then
    # (and no connection pooled by an earlier test - kombu's pools are global).
    kombu.pools.reset()
    monkeypatch.setattr(_AbstractTransport, "write", counting)
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.batch", queue=queue)

    try:
        for round_ in range(2):  # the first batch learns the channel
            assert {r.outcome for r in sink.deliver(deliveries(target, round_ * 5, 5))} == {
                Outcome.DELIVERED
            }
        counting_on = True
        results = sink.deliver(deliveries(target, 10, 200))
        counting_on = False
        assert [r.outcome for r in results] == [Outcome.DELIVERED] * 200
    finally:
        sink.close()
    if shortcuts.enabled("amqp.frame_writer") and shortcuts.enabled("amqp.pipelined_confirms"):
        # 200 publishes of ~1.5 KB: a handful of 64 KiB writes instead of 200 (one per publish).
        assert 1 <= len(writes) <= 8, writes
    else:  # the public path: py-amqp writes each publish with its own sendall
        assert len(writes) >= 200, writes
    assert sum(writes) > 200 * 500
    assert queued(broker, queue) == 210


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broker", [AMQP_BROKER], indirect=True, ids=["amqp"])
def test_amqp_batch_write_failure_retries_the_batch(
    queue: str, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amqp.transport import _AbstractTransport

    broken = False
    write = _AbstractTransport.write

    def breakable(self: Any, s: Any) -> None:
        if broken:
            self.connected = False
            raise ConnectionResetError("reset by test")
        write(self, s)

    # In place before the sink connects: py-amqp's own frame writer binds it then
    # (and no connection pooled by an earlier test - kombu's pools are global).
    kombu.pools.reset()
    monkeypatch.setattr(_AbstractTransport, "write", breakable)
    sink = CelerySink(broker, SinkOptions(socket_timeout=2))
    target = CeleryTarget(task="bridge_test.batch", queue=queue)

    try:
        for round_ in range(2):
            sink.deliver(deliveries(target, round_ * 5, 5))
        broken = True
        failed = sink.deliver(deliveries(target, 10, 20))
        broken = False
        assert [r.outcome for r in failed] == [Outcome.RETRY] * 20
        assert all(r.error is not None and sink.retryable(r.error) for r in failed)
        # The replay (same events, same task ids) goes out on a new connection.
        again = sink.deliver(deliveries(target, 10, 20))
        assert [r.outcome for r in again] == [Outcome.DELIVERED] * 20
    finally:
        sink.close()
    assert queued(broker, queue) == 30


def test_args_repr_is_the_repr_of_the_task_args() -> None:
    from ably_bridge.bridge.sinks.celery_message import args_repr, short_repr
    from ably_bridge.protocol.models import PresenceMessage

    envs = [
        B.message("c\u00fc", Message("n", {"a": [1, None, True]}, id="c:1:0", timestamp=3), "r"),
        B.message("c", Message(None, "x" * 3000, id="c:2:0", timestamp=4), "r"),
        B.presence("c", PresenceMessage(action=2, client_id="u", id="c:3:0", timestamp=5), "r"),
        B.lifecycle("c", "attached", "r", now_ms=6, previous="attaching", current="attached"),
    ]
    for env in envs:
        for limit in (1024, 40):
            assert args_repr(env, limit) == short_repr((env.to_dict(),), limit)


def test_property_encoder_writes_py_amqps_bytes() -> None:
    import datetime
    from decimal import Decimal

    import amqp

    from ably_bridge.bridge.sinks.amqp_wire import PropertyEncoder

    encoder = PropertyEncoder()
    app = Celery("enc", broker="memory://", set_as_current=False, amqp=SenderAMQP)
    celery_headers = app.amqp.create_task_message(
        "3f2c0a4e-0000-4000-8000-000000000001", "t.x", ({"a": "\u00e9" * 3},), {}, expires=60
    ).headers
    app.close()
    odd = {
        "none": None, "yes": True, "no": False, "small": 7, "big": 2**40, "neg": -3,
        "float": 1.5, "list": [None, 1, "x", [True]], "tuple": (1, 2), "dict": {"k": {"n": 1}},
        "bytes": b"\x00\xff", "dec": Decimal("1.25"), "\u00fc": "\u6771",
        "when": datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC),
        "id": "not-a-str-is-fine", "argsrepr": "x" * 2000, "expires": None,
    }  # fmt: skip
    cases = [
        {"content_type": "application/json", "content_encoding": "utf-8",
         "application_headers": celery_headers, "delivery_mode": 2, "priority": 3,
         "correlation_id": "c1", "reply_to": "r1", "expiration": "60000"},
        {"content_type": "text/plain", "application_headers": odd, "delivery_mode": 1,
         "priority": 0, "correlation_id": "\u00e9", "message_id": "m", "timestamp": 17,
         "type": "t", "user_id": "guest", "app_id": "a", "cluster_id": "c"},
        {"application_headers": {}},
        {},
    ]  # fmt: skip
    for _ in range(2):  # the second time from the memo
        for props in cases:
            expected = amqp.Message(b"", **props)._serialize_properties()
            assert encoder.encode(props) == expected, props
    # A different task id, argsrepr and expiry: encoded afresh, still py-amqp's bytes.
    headers = dict(celery_headers, id="other", root_id="other", argsrepr="(1,)", expires=None)
    props = dict(cases[0], application_headers=headers, correlation_id="other")
    assert encoder.encode(props) == amqp.Message(b"", **props)._serialize_properties()
