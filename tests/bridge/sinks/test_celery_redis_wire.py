"""The Celery sink's direct Redis writer (``kombu.redis_message_template``) against kombu.

The same batches go through one sender app twice - once written by
:mod:`ably_bridge.bridge.sinks.celery_redis_wire`, once with that shortcut off
(kombu's ``Producer.publish`` per task into the push-once channel) - into a
private redis-server, emptied between the two. The Redis lists must hold the
same bytes (the random ``delivery_tag`` and the ``expires`` instant aside), in
the same order, and the same push-once marks must be set. A real Celery worker
runs what the writer pushes.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker

from ably_bridge import shortcuts
from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink, make_sender_app
from ably_bridge.bridge.sinks.celery_redis import CALL_BYTES, CALL_MESSAGES, push_calls
from ably_bridge.bridge.sinks.celery_redis_wire import delivery_tags
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message, PresenceMessage
from tests.bridge.sinks.test_celery import Received, worker_app
from tests.support.redis_server import PrivateRedis
from workers.guard import WorkerGuard

B = EnvelopeBuilder("appX", "test")
PREFIX = "wire"
OFF = "kombu.redis_message_template"
_TAG = re.compile(
    rb'"delivery_tag": "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"'
)
_EXPIRES = re.compile(rb'"expires": "([^"]+)"')


def _batches() -> list[list[Delivery]]:
    plain = CeleryTarget(task="wire.plain", queue="wq")
    rich = CeleryTarget(
        task="wire.rich", queue="wq", priority=3, expires=60, headers={"x-trace": "t{1}"}
    )
    other = CeleryTarget(task="wire.other", queue="wq2", priority=9)
    data = {"é": ["ü", None, "\u2028"]}
    envs = [
        B.message("c", Message("n", {"i": i, **data}, id=f"c:{i}:0", timestamp=i), "r")
        for i in range(30)
    ]
    member = PresenceMessage(action=2, client_id="u'\"", id="p:1:0", timestamp=9)
    envs.append(B.presence("p", member, "r"))
    targets = [plain, rich, other]
    mixed = [Delivery(e, targets[i % 3]) for i, e in enumerate(envs)]
    return [
        [Delivery(envs[0], plain)],  # one alone
        mixed[:20],
        mixed[10:],  # half of them again: their marks are set, they are not pushed twice
        [Delivery(envs[3], plain), Delivery(envs[3], plain)],  # the same task twice in a batch
    ]


def _lists(client: redis.Redis) -> dict[str, list[bytes]]:
    out = {}
    for key in sorted(client.keys("wq*")):
        if client.type(key) == b"list":
            out[key.decode()] = client.lrange(key, 0, -1)
    return out


def _run(app: Celery, url: str, client: redis.Redis, direct: bool) -> dict[str, Any]:
    options = SinkOptions(key_prefix=PREFIX, dedup_ttl=600, socket_timeout=5)
    sink = CelerySink(url, options, app=app)
    assert (sink._direct is not None) is direct
    outcomes = []
    try:
        for batch in _batches():
            outcomes.append([(r.outcome, r.detail) for r in sink.deliver(batch)])
        if direct:  # every template was written here, none fell back to kombu
            assert sink._direct._wired and all(w for _, w in sink._direct._wired.values())
    finally:
        sink.close()
    stored = {"outcomes": outcomes, "lists": _lists(client)}
    stored["marks"] = sorted(client.keys(f"{PREFIX}:celery:sent:*"))
    stored["ttls"] = {client.pttl(k) // 10_000 for k in stored["marks"]}
    client.flushall()
    return stored


def _normal(raw: bytes) -> tuple[bytes, datetime | None]:
    found = _EXPIRES.search(raw)
    when = datetime.fromisoformat(found.group(1).decode()) if found else None
    return _EXPIRES.sub(b'"expires": "<t>"', _TAG.sub(b'"delivery_tag": "<tag>"', raw)), when


def test_the_lists_hold_the_bytes_kombu_pushes(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shortcuts.enabled(OFF)
    client = redis.Redis.from_url(private_redis.url)
    app = make_sender_app(private_redis.url, timeout=5, push_once=(PREFIX, 600))
    try:
        fast = _run(app, private_redis.url, client, direct=True)
        monkeypatch.setenv(shortcuts.ENV_VAR, OFF)
        kombu = _run(app, private_redis.url, client, direct=False)
    finally:
        app.close()
    assert fast["outcomes"] == kombu["outcomes"]
    assert {o for run in fast["outcomes"] for o, _ in run} == {Outcome.DELIVERED}
    assert fast["marks"] == kombu["marks"] and len(fast["marks"]) == 31
    assert fast["ttls"] == kombu["ttls"] == {59}
    # Three priority lists: wq, wq\x06\x163 and wq2\x06\x169; every task once, in order.
    assert list(fast["lists"]) == list(kombu["lists"]) == ["wq", "wq\x06\x163", "wq2\x06\x169"]
    assert sum(len(v) for v in fast["lists"].values()) == 31
    expiring = 0
    for key, ours in fast["lists"].items():
        theirs = kombu["lists"][key]
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            (a_text, a_when), (b_text, b_when) = _normal(a), _normal(b)
            assert a_text == b_text
            assert a != b  # (each message its own delivery tag)
            if a_when is not None and b_when is not None:
                expiring += 1
                assert abs((a_when - b_when).total_seconds()) < 30
    assert expiring == 10
    first = json.loads(fast["lists"]["wq"][-1])
    task_id = celery_task_id("r", "wire.plain", _batches()[0][0].envelope.dedup_key)
    assert first["headers"]["id"] == first["properties"]["correlation_id"] == task_id


def test_a_long_batch_into_one_queue_keeps_its_order(private_redis: PrivateRedis) -> None:
    """2,500 tasks in one batch (20 script calls written at once) keep publish order."""
    client = redis.Redis.from_url(private_redis.url)
    target = CeleryTarget(task="wire.order", queue="wq")
    envs = [B.message("c", Message("n", i, id=f"o:{i}:0", timestamp=i), "r") for i in range(2500)]
    sink = CelerySink(private_redis.url, SinkOptions(key_prefix=PREFIX, socket_timeout=5))
    try:
        results = sink.deliver([Delivery(e, target) for e in envs])
    finally:
        sink.close()
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2500
    ids = [json.loads(raw)["headers"]["id"] for raw in reversed(client.lrange("wq", 0, -1))]
    assert ids == [r.detail for r in results]


def test_delivery_tags_are_random_version_4_uuids() -> None:
    tags = delivery_tags(2000)
    assert len(set(tags)) == 2000
    for tag in tags:
        parsed = uuid.UUID(tag)
        assert str(parsed) == tag and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every position but the fixed ones takes several values (the bits are random).
    assert all(len({t[i] for t in tags}) > 3 for i in range(36) if i not in (8, 13, 14, 18, 23))
    assert {t[19] for t in tags} == set("89ab") and delivery_tags(0) == []


def test_a_batch_is_cut_into_bounded_script_calls() -> None:
    big = 30_000  # two of them fit in a call's bytes, three do not
    items = [(f"m{i}", "q" if i % 3 else "q2", "x" * (100 if i < 300 else big)) for i in range(310)]
    calls = push_calls(7, items)
    sizes = [len(args[2::2]) for _, args in calls]
    # 128 + 128 messages, then the last 44 small ones and two big ones, then two by two.
    assert sizes == [CALL_MESSAGES, CALL_MESSAGES, 46, 2, 2, 2, 2]
    assert all(sum(map(len, args[3::2])) <= CALL_BYTES for _, args in calls)
    # Each call: the queue keys, then the marks; per message its queue's index and itself.
    keys, args = calls[0]
    assert keys[:2] == ["q2", "q"] and keys[2:] == [f"m{i}" for i in range(CALL_MESSAGES)]
    assert args[:4] == [7, 2, 1, "x" * 100] and args[4] == 2
    pushed = [m for keys, args in calls for m in keys[args[1] :]]
    assert pushed == [mark for mark, _, _ in items]


def test_a_server_without_the_script_gets_it_loaded(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    target = CeleryTarget(task="wire.flush", queue="wq")
    envs = [B.message("c", Message("n", i, id=f"f:{i}:0", timestamp=i), "r") for i in range(4)]
    sink = CelerySink(private_redis.url, SinkOptions(key_prefix=PREFIX, socket_timeout=5))
    try:
        assert [r.outcome for r in sink.deliver([Delivery(e, target) for e in envs[:2]])] == [
            Outcome.DELIVERED
        ] * 2
        client.script_flush()  # (a restarted broker, or SCRIPT FLUSH)
        assert [r.outcome for r in sink.deliver([Delivery(e, target) for e in envs])] == [
            Outcome.DELIVERED
        ] * 4
    finally:
        sink.close()
    ids = [json.loads(raw)["headers"]["id"] for raw in reversed(client.lrange("wq", 0, -1))]
    assert ids == [celery_task_id("r", "wire.flush", e.dedup_key) for e in envs]


@pytest.mark.timeout(90)
def test_a_worker_runs_what_the_writer_pushes(
    private_redis: PrivateRedis, rclient: redis.Redis, prefix: str
) -> None:
    received = Received()
    guard = WorkerGuard(rclient, prefix=prefix)
    task_name = f"bridge_test.wire_{uuid.uuid4().hex[:8]}"
    queue = "wire-q"
    app = worker_app(private_redis.url, queue, task_name, received, guard)
    targets = [
        CeleryTarget(task=task_name, queue=queue),
        CeleryTarget(task=task_name, queue=queue, priority=6, expires=60, headers={"origin": "w"}),
    ]
    envs = [
        B.message("c", Message("n", {"i": i}, id=f"w:{i}:0", timestamp=1), "r") for i in range(40)
    ]
    sink = CelerySink(private_redis.url, SinkOptions(key_prefix=prefix, socket_timeout=5))
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            for start in range(0, 40, 20):
                chunk = envs[start : start + 20]
                batch = [Delivery(e, targets[i % 2]) for i, e in enumerate(chunk)]
                results = sink.deliver(batch)
                assert [r.outcome for r in results] == [Outcome.DELIVERED] * 20
            received.wait_for(40, timeout=30)
        assert sink._direct is not None and all(w for _, w in sink._direct._wired.values())
    finally:
        sink.close()
    by_id = {task_id: body for task_id, body, _ in received.items}
    assert by_id == {celery_task_id("r", task_name, e.dedup_key): e.to_dict() for e in envs}
