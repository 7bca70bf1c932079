"""The Celery sink's message templates: what reaches the broker is what send_task sends.

Each test sends the same envelope twice - through the sink (a template built
once from ``send_task``, filled in per event) and through Celery's own
``send_task`` with the same task id and options - then reads both raw messages
back from the broker (Redis lists, RabbitMQ ``basic.get``) and compares
headers, properties, body, content type/encoding, delivery mode and routing.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import datetime
from typing import Any

import amqp
import pytest
import redis
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker

from ably_bridge import shortcuts
from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.bridge.sinks.test_celery import Received, worker_app
from workers.guard import WorkerGuard

B = EnvelopeBuilder("appX", "test")


def envelopes(n: int) -> list[Envelope]:
    return [
        B.message("c", Message("n", {"i": i}, id=f"c:{i}:0", timestamp=1), "r") for i in range(n)
    ]


def body_bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)  # py-amqp decodes utf-8


def raw_messages(broker: str, queue: str, n: int) -> list[dict[str, Any]]:
    """The ``n`` messages in ``queue`` in publish order, as the broker holds them."""
    out: list[dict[str, Any]] = []
    if broker.startswith("amqp"):
        conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
        conn.connect()
        try:
            channel = conn.channel()
            for _ in range(n):
                msg = channel.basic_get(queue, no_ack=True)
                assert msg is not None, f"fewer than {n} messages in {queue}"
                props = dict(msg.properties)
                out.append(
                    {
                        "headers": props.pop("application_headers"),
                        "content_type": props.pop("content_type"),
                        "content_encoding": props.pop("content_encoding"),
                        "properties": props,
                        "routing": (
                            msg.delivery_info["exchange"],
                            msg.delivery_info["routing_key"],
                        ),
                        "body": body_bytes(msg.body),
                    }
                )
        finally:
            conn.close()
        return out
    client = redis.Redis.from_url(broker)
    # kombu's Redis transport keeps one list per priority step: queue, queue\x06\x16<n>.
    for key in sorted(client.keys(f"{queue}*")):
        for raw in reversed(client.lrange(key, 0, -1)):  # LPUSH: oldest last
            payload = json.loads(raw)
            props = payload["properties"]
            info = props.pop("delivery_info")
            assert props.pop("body_encoding") == "base64"
            out.append(
                {
                    "headers": payload["headers"],
                    "content_type": payload["content-type"],
                    "content_encoding": payload["content-encoding"],
                    "properties": props,
                    "routing": (info["exchange"], info["routing_key"]),
                    "body": base64.b64decode(payload["body"]),
                }
            )
    assert len(out) == n
    return out


def send_task_reference(sink: CelerySink, target: CeleryTarget, env: Envelope) -> None:
    """What Celery's own ``send_task`` publishes for ``env`` (the sink's options)."""
    options: dict[str, Any] = {}
    for name in ("queue", "routing_key", "priority", "expires"):
        if getattr(target, name) is not None:
            options[name] = getattr(target, name)
    if target.headers:
        options["headers"] = dict(target.headers)
    task_id = celery_task_id(env.rule_id, target.task, env.dedup_key)
    url = str(sink.app.conf.broker_url)
    if url.startswith("redis"):  # the sink pushed this task id once: let it go again
        client = redis.Redis.from_url(url)
        marks = client.keys(f"{sink.options.key_prefix}:celery:sent:*:{task_id}")
        if marks:  # (none when kombu is too old for push-once: celery_redis.supported())
            client.delete(*marks)
    sink.app.send_task(
        target.task,
        args=(env.to_dict(),),
        task_id=task_id,
        add_to_parent=False,
        ignore_result=True,
        **options,
    )


def assert_same_message(fast: dict[str, Any], reference: dict[str, Any]) -> None:
    """Equal apart from what legitimately differs between two sends of one task."""
    fast, reference = dict(fast), dict(reference)
    fh, rh = dict(fast.pop("headers")), dict(reference.pop("headers"))
    # ``expires`` is computed from the time of each send.
    fe, re_ = fh.pop("expires"), rh.pop("expires")
    assert (fe is None) == (re_ is None)
    if fe is not None:
        lag = datetime.fromisoformat(fe) - datetime.fromisoformat(re_)
        assert abs(lag.total_seconds()) < 10
    assert list(fh.items()) == list(rh.items())  # the same headers, in the same order
    fp, rp = dict(fast.pop("properties")), dict(reference.pop("properties"))
    # kombu's Redis transport gives every message a fresh uuid4 delivery tag.
    assert uuid.UUID(str(fp.pop("delivery_tag", uuid.uuid4())))
    assert uuid.UUID(str(rp.pop("delivery_tag", uuid.uuid4())))
    assert fp == rp
    # The body is the same JSON value; the sink writes the envelope's own compact JSON.
    assert json.loads(fast.pop("body")) == json.loads(reference.pop("body"))
    assert fast == reference  # content type and encoding, routing


TARGETS = [
    pytest.param({}, id="plain"),
    pytest.param(
        {"priority": 3, "expires": 60, "headers": {"origin": "ab", "x-trace": "t1"}},
        id="priority-expires-headers",
    ),
    pytest.param({"routing_key": "rk"}, id="routing-key"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("extra", TARGETS)
def test_fast_message_is_what_send_task_sends(
    broker: str, queue: str, extra: dict[str, Any]
) -> None:
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.tpl", queue=queue, **extra)
    envs = [
        B.message("chat:1", Message("text", {"a": 1, "ü": "é"}, id="c:1:0", timestamp=9), "r"),
        B.message("chat:2", Message(None, "x" * 3000, id="c:2:0", timestamp=10), "r"),  # repr cut
    ]
    try:
        for env in envs:
            (result,) = sink.deliver([Delivery(env, target)])
            assert result.outcome is Outcome.DELIVERED
            assert result.detail == celery_task_id("r", target.task, env.dedup_key)
            send_task_reference(sink, target, env)
        # the sink did use a template (unless the shortcut is off: send_task each time)
        assert (sink._template(target) is not None) is shortcuts.enabled("celery.task_template")
    finally:
        sink.close()
    messages = raw_messages(broker, queue, 2 * len(envs))
    for i in range(len(envs)):
        assert_same_message(messages[2 * i], messages[2 * i + 1])
    first = messages[0]["headers"]
    assert first["id"] == first["root_id"] == messages[0]["properties"]["correlation_id"]
    assert len(messages[2]["headers"]["argsrepr"]) == 1024  # Celery's limit, cut with "..."


@pytest.mark.timeout(60)
def test_batches_are_built_from_one_template(broker: str, queue: str) -> None:
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.tpl", queue=queue, priority=1)
    calls: list[str] = []
    send_task = sink.app.send_task

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return send_task(*args, **kwargs)

    sink.app.send_task = counting  # type: ignore[method-assign]
    envs = [
        B.message("c", Message("n", f"d{i}", id=f"c:{i}:0", timestamp=1), "r") for i in range(60)
    ]
    try:
        for start in range(0, 60, 20):  # AMQP: the first batch learns the channel
            results = sink.deliver([Delivery(e, target) for e in envs[start : start + 20]])
            assert [r.outcome for r in results] == [Outcome.DELIVERED] * 20
    finally:
        sink.close()
    if shortcuts.enabled("celery.task_template"):
        assert calls == ["bridge_test.tpl"]  # the template's sample, once; none per event
    else:
        assert calls == ["bridge_test.tpl"] * 60  # the public path: send_task per event
    messages = raw_messages(broker, queue, 60)
    assert [m["headers"]["id"] for m in messages] == [
        celery_task_id("r", target.task, e.dedup_key) for e in envs
    ]
    assert [json.loads(m["body"])[0][0] for m in messages] == [e.to_dict() for e in envs]


@pytest.mark.timeout(60)
def test_publish_signal_receivers_get_every_task(broker: str, queue: str) -> None:
    """With a ``before_task_publish`` receiver the sink sends through send_task."""
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.tpl", queue=queue)
    seen: list[str] = []

    def receiver(sender: str, headers: dict[str, Any], **_: Any) -> None:
        seen.append(headers["id"])

    signals.before_task_publish.connect(receiver, weak=False)
    envs = [
        B.message("c", Message("n", f"d{i}", id=f"c:{i}:0", timestamp=1), "r") for i in range(3)
    ]
    try:
        results = sink.deliver([Delivery(e, target) for e in envs])
    finally:
        signals.before_task_publish.disconnect(receiver)
        sink.close()
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    assert seen == [r.detail for r in results]
    assert len(raw_messages(broker, queue, 3)) == 3


@pytest.mark.timeout(60)
def test_an_envelope_the_template_cannot_encode_goes_through_send_task(
    broker: str, queue: str
) -> None:
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="bridge_test.tpl", queue=queue)
    env = B.message("c", Message("n", {"v": math.nan}, id="c:1:0", timestamp=1), "r")
    with pytest.raises(ValueError, match="JSON compliant"):
        env.to_json()  # strict JSON: no NaN
    try:
        (result,) = sink.deliver([Delivery(env, target)])
    finally:
        sink.close()
    assert result.outcome is Outcome.DELIVERED  # as before templates: kombu's JSON writes NaN
    (message,) = raw_messages(broker, queue, 1)
    assert math.isnan(json.loads(message["body"])[0][0]["messages"][0]["data"]["v"])


@pytest.mark.timeout(90)
def test_a_worker_runs_the_templated_tasks(
    broker: str, queue: str, rclient: redis.Redis, prefix: str
) -> None:
    received = Received()
    guard = WorkerGuard(rclient, prefix=prefix)
    task_name = f"bridge_test.tpl_{uuid.uuid4().hex[:8]}"
    app: Celery = worker_app(broker, queue, task_name, received, guard)
    target = CeleryTarget(task=task_name, queue=queue, expires=60, headers={"origin": "tpl"})
    sink = CelerySink(broker, SinkOptions(socket_timeout=5))
    envs = [
        B.message("c", Message("n", {"i": i}, id=f"c:{i}:0", timestamp=1), "r") for i in range(30)
    ]
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            for start in range(0, 30, 10):
                results = sink.deliver([Delivery(e, target) for e in envs[start : start + 10]])
                assert [r.outcome for r in results] == [Outcome.DELIVERED] * 10
            received.wait_for(30, timeout=30)
        assert (sink._template(target) is not None) is shortcuts.enabled("celery.task_template")
    finally:
        sink.close()
    by_id = {task_id: body for task_id, body, _ in received.items}
    assert by_id == {celery_task_id("r", task_name, e.dedup_key): e.to_dict() for e in envs}
    assert {origin for _, _, origin in received.items} == {"tpl"}
