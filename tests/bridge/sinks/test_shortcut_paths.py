"""Each sink shortcut against the library's public path, on the same input, on real servers.

A sink built inside :func:`ably_bridge.shortcuts.public_paths` takes the public
path of every shortcut (what a library version outside ably_bridge/shortcuts.py's
table gets). Both sinks deliver the same batches; the Redis entries (stream
fields, dedup marks, per-event outcomes, an error reply in its place) and the
Celery task messages as the broker holds them (headers, AMQP properties, body,
routing) must be the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from ably_bridge import shortcuts
from ably_bridge.bridge.config import CeleryTarget, StreamTarget
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink
from ably_bridge.bridge.sinks.redis_streams import RedisStreamSink
from ably_bridge.protocol.models import Message, PresenceMessage
from tests.bridge.conftest import fresh_queue
from tests.bridge.sinks.test_celery_template import B, assert_same_message, raw_messages
from tests.support.services import REDIS_URL

PATHS = ["shortcut", "public"]


def built(path: str, make: Callable[[], Any]) -> Any:
    if path == "public":
        with shortcuts.public_paths():
            return make()
    return make()


def summary(results: list[Result]) -> list[tuple[Outcome, str]]:
    """Outcomes and the kind of error (a stream entry id differs between two writes)."""
    return [(r.outcome, type(r.error).__name__ if r.error else "") for r in results]


# -- Redis Streams ---------------------------------------------------------------------------
def _stream_run(path: str, rclient: redis.Redis, prefix: str) -> dict[str, Any]:
    base = f"{prefix}:{path}"
    sink = built(path, lambda: RedisStreamSink(REDIS_URL, SinkOptions(key_prefix=base)))
    assert sink._raw is (path == "shortcut" and shortcuts.enabled("redis.raw_pipeline"))
    rclient.set(f"{base}:s:wrong", "not a stream")  # WRONGTYPE for that stream's events
    envelope = StreamTarget(key=f"{base}:s:{{channel}}")
    flat = StreamTarget(key=f"{base}:flat", layout="flat", maxlen=5, approximate=False)
    envs = [
        B.message("a", Message("n", {"i": i, "é": "ü"}, id=f"a:{i}:0", timestamp=i), "r")
        for i in range(8)
    ] + [B.presence("b", PresenceMessage(action=2, client_id="u", id="b:1:0", timestamp=9), "r")]
    wrong = B.message("wrong", Message("n", "x", id="w:1:0", timestamp=1), "r")
    runs: list[list[tuple[Outcome, str]]] = []
    try:
        batch = [Delivery(e, t) for e in envs for t in (envelope, flat)]
        batch += [Delivery(envs[0], envelope), Delivery(wrong, envelope)]  # a duplicate, a refusal
        runs.append(summary(sink.deliver(batch)))
        runs.append(summary(sink.deliver(batch[:6])))  # all duplicates now
        runs.append(summary(sink.deliver([Delivery(envs[1], flat)])))
    finally:
        sink.close()
    streams = {}
    for key in sorted(k.decode() for k in rclient.keys(f"{base}:*")):
        kind = rclient.type(key).decode()
        name = key.replace(base, "<base>")
        if kind == "stream":
            streams[name] = [fields for _, fields in rclient.xrange(key)]
        elif kind == "hash":
            marks = rclient.hgetall(key)
            streams[name.rsplit(":", 1)[0] + ":<bucket>"] = sorted(marks)
    return {"runs": runs, "stored": streams}


def test_redis_stream_entries_and_outcomes_are_the_same_on_both_paths(
    rclient: redis.Redis, prefix: str
) -> None:
    fast = _stream_run("shortcut", rclient, prefix)
    public = _stream_run("public", rclient, prefix)
    assert fast == public
    first = fast["runs"][0]
    assert first[-2:] == [(Outcome.DUPLICATE, ""), (Outcome.REJECTED, "ResponseError")]
    assert {o for o, _ in fast["runs"][1]} == {Outcome.DUPLICATE}
    assert len(fast["stored"]["<base>:flat"]) == 5  # MAXLEN 5, exact
    entry = fast["stored"]["<base>:s:a"][0]
    assert json.loads(entry[b"envelope"])["messages"][0]["id"] == "a:0:0"


# -- Celery ------------------------------------------------------------------------------------
@pytest.fixture
def second_queue(broker: str) -> Iterator[str]:
    with fresh_queue(broker) as name:
        yield name


def _celery_run(path: str, broker: str, queue: str) -> list[list[tuple[Outcome, str]]]:
    sink = built(path, lambda: CelerySink(broker, SinkOptions(socket_timeout=5)))
    taken = path == "shortcut"
    assert sink._templated is (taken and shortcuts.enabled("celery.task_template"))
    assert sink._pipelined is (taken and shortcuts.enabled("amqp.pipelined_confirms"))
    plain = CeleryTarget(task="bridge_test.paths", queue=queue)
    rich = CeleryTarget(
        task="bridge_test.paths", queue=queue, priority=3, expires=60, headers={"x-trace": "t"}
    )
    envs = [
        B.message("c", Message("n", {"i": i, "é": [1, None]}, id=f"c:{i}:0", timestamp=i), "r")
        for i in range(41)
    ]
    runs = []
    try:
        # One, then batches of 20: on AMQP the first learns the channel, the rest pipeline.
        runs.append(summary(sink.deliver([Delivery(envs[0], plain)])))
        for start in (1, 21):
            chunk = envs[start : start + 20]
            batch = [Delivery(e, plain if i % 2 else rich) for i, e in enumerate(chunk)]
            runs.append(summary(sink.deliver(batch)))
    finally:
        sink.close()
    return runs


def test_celery_task_messages_are_the_same_on_both_paths(
    broker: str, queue: str, second_queue: str
) -> None:
    fast = _celery_run("shortcut", broker, queue)
    public = _celery_run("public", broker, second_queue)
    assert fast == public
    assert {o for run in fast for o, _ in run} == {Outcome.DELIVERED}
    ours, theirs = raw_messages(broker, queue, 41), raw_messages(broker, second_queue, 41)
    for a, b in zip(ours, theirs, strict=True):
        # (routed to two queues; everything else, AMQP properties included, must match)
        assert a["routing"] == (a["routing"][0], queue)
        assert b["routing"] == (b["routing"][0], second_queue)
        a["routing"] = b["routing"] = None
        # (the reply_to of a task is its sending app's thread id: one per sink)
        assert a["properties"].pop("reply_to") and b["properties"].pop("reply_to")
        assert_same_message(a, b)
    assert ours[1]["properties"].get("priority") == 3 or broker.startswith("redis")
