"""The Celery sink's AMQP frames (``amqp.task_frames``) against kombu and py-amqp.

For the same task, the frames :mod:`ably_bridge.bridge.sinks.amqp_frames`
builds must be the bytes py-amqp's own ``frame_writer`` writes for the message
kombu's ``Producer.publish`` hands the channel (its properties encoded by
py-amqp itself), on a real RabbitMQ channel: small bodies and one cut into
several body frames. The sink's batches take that path, and the broker holds
what the public path would have sent (tests/bridge/sinks/test_shortcut_paths.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps as amqp_dumps

from ably_bridge import shortcuts
from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.amqp_frames import TaskFrames
from ably_bridge.bridge.sinks.amqp_wire import PropertyEncoder
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.bridge.conftest import fresh_queue
from tests.support.services import AMQP_BROKER, amqp_available

B = EnvelopeBuilder("appX", "test")

pytestmark = pytest.mark.skipif(not amqp_available(), reason="RabbitMQ is not running")


@pytest.fixture
def amqp_queue() -> Iterator[str]:
    with fresh_queue(AMQP_BROKER) as name:
        yield name


class _Written:
    """py-amqp's frame writer's connection and transport, for writing into a list."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.out: list[bytes] = []

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))


def _kombu_frames(sink: CelerySink, producer: Any, target: CeleryTarget, env: Envelope,
                  task_id: str, expires: str | None) -> bytes:  # fmt: skip
    """What kombu's publish and py-amqp's frame writer write for this task."""
    template = sink._template(target)
    assert template is not None
    body, headers = template.publish_args(sink.app, target, env, task_id)
    if expires is not None:
        headers["expires"] = expires  # (the instant the frames were built at)
    channel = producer.channel
    seen: list[tuple[Any, tuple[Any, ...]]] = []
    saved = channel.basic_publish  # (in confirm mode: basic_publish_confirm, put back below)
    channel.basic_publish = lambda msg, exchange, routing_key, mandatory=False, immediate=False, **_: seen.append((msg, (0, exchange, routing_key, mandatory, immediate)))  # noqa: E501  # fmt: skip
    try:
        producer.publish(
            body, headers=headers, correlation_id=task_id, reply_to=sink.app.thread_oid,
            retry=False, declare=[], **template.publish,
        )  # fmt: skip
    finally:
        channel.basic_publish = saved
    ((msg, args),) = seen
    written = _Written(channel.connection.frame_max)
    write = frame_writer(written, written)
    write(1, channel.channel_id, spec.Basic.Publish, amqp_dumps("Bssbb", args), msg)
    assert written.bytes_sent == 1
    return b"".join(written.out)


def _expires_in(frames: bytes) -> str | None:
    at = frames.find(b"\x07expiresS")
    if at < 0:
        return None
    (size,) = struct.unpack(">I", frames[at + 9 : at + 13])
    return frames[at + 13 : at + 13 + size].decode()


def test_the_frames_are_what_py_amqp_writes_for_kombus_message(amqp_queue: str) -> None:
    if not shortcuts.enabled("celery.task_template"):  # (the frames are built from templates)
        pytest.skip("the celery.task_template shortcut is off")
    sink = CelerySink(AMQP_BROKER, SinkOptions(socket_timeout=5))
    builder = TaskFrames(PropertyEncoder())  # (what the sink uses when the shortcut is on)
    targets = [
        CeleryTarget(task="frames.plain", queue=amqp_queue),
        CeleryTarget(
            task="frames.rich", queue=amqp_queue, priority=7, expires=30,
            headers={"x-trace": "é{1}", "x-n": 3, "x-list": [1, "a", None]},
        ),
    ]  # fmt: skip
    envs = [
        B.message("c", Message("n", {"i": 1, "é": "\u2028"}, id="f:1:0", timestamp=1), "r"),
        B.message("c", Message("n", "x" * 300_000, id="f:2:0", timestamp=2), "r"),  # 3 frames
    ]
    compared = 0
    try:
        with sink.app.producer_or_acquire() as producer:
            channel = producer.channel
            frames_of = builder.batch(sink.app, channel, producer)
            for target in targets:
                template = sink._template(target)
                assert template is not None
                for env in envs:
                    task_id = celery_task_id("r", target.task, env.dedup_key)
                    ours = frames_of(template, env, task_id)
                    assert ours is not None
                    expires = _expires_in(ours)
                    assert (expires is not None) is (target.expires is not None)
                    theirs = _kombu_frames(sink, producer, target, env, task_id, expires)
                    assert ours == theirs
                    compared += 1
                    body_frames = ours.count(b"\xce\x03")  # (a frame end, then a body frame)
                    assert body_frames == (1 if len(env.to_json()) < 100_000 else 3)
    finally:
        sink.close()
    assert compared == 4


def test_a_batch_takes_the_frames_path_when_on_and_is_confirmed(amqp_queue: str) -> None:
    sink = CelerySink(AMQP_BROKER, SinkOptions(socket_timeout=5))
    target = CeleryTarget(task="frames.batch", queue=amqp_queue)
    envs = [B.message("c", Message("n", i, id=f"b:{i}:0", timestamp=i), "r") for i in range(41)]
    try:
        results = sink.deliver([Delivery(envs[0], target)])  # (learns the channel's tags)
        for start in (1, 21):
            results += sink.deliver([Delivery(e, target) for e in envs[start : start + 20]])
        taken = shortcuts.enabled("amqp.task_frames")
        assert (sink._frames is not None) is taken
        assert sink._direct is None  # (the Redis broker's writer: not built for RabbitMQ)
        if sink._frames is not None:
            assert [w is not None for _, w in sink._frames._wired.values()] == [True]
    finally:
        sink.close()
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 41
    assert [r.detail for r in results] == [
        celery_task_id("r", "frames.batch", e.dedup_key) for e in envs
    ]
