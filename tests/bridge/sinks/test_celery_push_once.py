"""Celery sink on a Redis broker: a task id is pushed once (mark + LPUSH in one Lua step).

Against a private redis-server as the broker and a real Celery worker.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions
from ably_bridge.bridge.sinks.celery import CelerySink, make_sender_app
from ably_bridge.bridge.sinks.celery_redis import sent_mark
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.bridge.sinks.test_celery import Received, worker_app
from tests.support.redis_server import PrivateRedis
from workers.guard import WorkerGuard

B = EnvelopeBuilder("appX", "test")
PREFIX = "pushonce"


def envelopes(n: int, start: int = 0) -> list[Envelope]:
    return [
        B.message("chan", Message("e", i, id=f"m:{i}:0", timestamp=1000 + i), "route")
        for i in range(start, start + n)
    ]


def queued(client: redis.Redis, queue: str) -> int:
    return sum(int(client.llen(k)) for k in client.keys(f"{queue}*") if client.type(k) == b"list")


def test_a_resent_task_id_is_not_pushed_again(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    options = SinkOptions(key_prefix=PREFIX, dedup_ttl=600, socket_timeout=2)
    target = CeleryTarget(task="t.once", queue="q1", priority=4)
    first = envelopes(6)
    sink = CelerySink(private_redis.url, options)
    try:
        results = sink.deliver([Delivery(e, target) for e in first])
        assert [r.outcome for r in results] == [Outcome.DELIVERED] * 6
        assert queued(client, "q1") == 6
        # A replay (pipelined batch, then one by one) overlapping two new events.
        again = first[2:] + envelopes(2, start=6)
        results = sink.deliver([Delivery(e, target) for e in again])
        assert all(r.outcome is Outcome.DELIVERED for r in results)
        (single,) = sink.deliver([Delivery(first[0], target)])
        assert single.outcome is Outcome.DELIVERED
    finally:
        sink.close()
    assert queued(client, "q1") == 8
    # A new sink (the bridge restarted after a crash) skips them as well.
    restarted = CelerySink(private_redis.url, options)
    try:
        results = restarted.deliver([Delivery(e, target) for e in first])
        assert all(r.outcome is Outcome.DELIVERED for r in results)
    finally:
        restarted.close()
    assert queued(client, "q1") == 8
    # Each mark is the task id on its queue, kept dedup_ttl seconds.
    task_id = celery_task_id("route", "t.once", first[0].dedup_key)
    ttl = client.pttl(sent_mark(PREFIX, "q1", task_id))
    assert 590_000 < ttl <= 600_000
    assert len(client.keys(f"{PREFIX}:celery:sent:q1:*")) == 8
    # A mark gone (expired) lets the task be pushed again: the worker guard's case.
    client.delete(sent_mark(PREFIX, "q1", task_id))
    sink = CelerySink(private_redis.url, options)
    try:
        assert sink.deliver([Delivery(first[0], target)])[0].outcome is Outcome.DELIVERED
    finally:
        sink.close()
    assert queued(client, "q1") == 9


def test_two_targets_and_forced_resends_are_distinct(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    options = SinkOptions(key_prefix=PREFIX, socket_timeout=2)
    a = CeleryTarget(task="t.a", queue="qa")
    b = CeleryTarget(task="t.b", queue="qb")
    (env,) = envelopes(1)
    sink = CelerySink(private_redis.url, options)
    try:
        for _ in range(2):
            results = sink.deliver([Delivery(env, a), Delivery(env, b)])
            assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    finally:
        sink.close()
    assert (queued(client, "qa"), queued(client, "qb")) == (1, 1)
    # The dead-letter replay's sender (no push_once) re-sends a task id on purpose.
    task_id = celery_task_id("route", "t.a", env.dedup_key)
    app = make_sender_app(private_redis.url, timeout=2)
    try:
        app.send_task("t.a", args=({},), task_id=task_id, queue="qa")
    finally:
        app.close()
    assert queued(client, "qa") == 2


@pytest.mark.timeout(90)
def test_a_worker_runs_each_task_once_without_its_guard(private_redis: PrivateRedis) -> None:
    """Re-sends overlapping a live worker: every task id arrives (and runs) exactly once."""
    received = Received()
    guard = WorkerGuard(redis.Redis.from_url(private_redis.url), prefix=PREFIX)
    task_name = f"t.once_{uuid.uuid4().hex[:8]}"  # task names are process-global in Celery
    app = worker_app(private_redis.url, "qw", task_name, received, guard)
    target = CeleryTarget(task=task_name, queue="qw")
    events = envelopes(40)
    sink = CelerySink(private_redis.url, SinkOptions(key_prefix=PREFIX, socket_timeout=5))
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            for start in range(0, 40, 10):  # each batch re-sends the previous one too
                batch = events[max(0, start - 10) : start + 10]
                results = sink.deliver([Delivery(e, target) for e in batch])
                assert all(r.outcome is Outcome.DELIVERED for r in results)
            received.wait_for(40, timeout=60)
            # Wait until nothing is queued or unacknowledged: nothing late can still arrive.
            client = redis.Redis.from_url(private_redis.url)
            deadline = time.monotonic() + 30
            while queued(client, "qw") or client.hlen("unacked"):
                assert time.monotonic() < deadline, "the worker did not drain its queue"
                time.sleep(0.05)
    finally:
        sink.close()
    counts = Counter(task_id for task_id, _, _ in received.items)
    assert len(counts) == 40
    assert max(counts.values()) == 1
    assert [body["messages"][0]["data"] for _, body, _ in received.items] == list(range(40))


def test_without_the_kombu_internals_it_pushes_as_kombu_does(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ably_bridge.bridge.sinks.celery as celery_module

    monkeypatch.setattr(celery_module, "supported", lambda: False)
    client = redis.Redis.from_url(private_redis.url)
    target = CeleryTarget(task="t.plain", queue="qp")
    (env,) = envelopes(1)
    with caplog.at_level("WARNING", logger="ably_bridge.bridge.sinks.celery"):
        sink = CelerySink(private_redis.url, SinkOptions(key_prefix=PREFIX, socket_timeout=2))
    try:
        for _ in range(2):
            assert sink.deliver([Delivery(env, target)])[0].outcome is Outcome.DELIVERED
    finally:
        sink.close()
    assert "push-once" in caplog.text
    assert queued(client, "qp") == 2  # queued again: the worker guard's job
    assert client.keys(f"{PREFIX}:celery:sent:*") == []


def test_a_batch_holding_one_task_twice_and_a_restarted_broker(private_redis: PrivateRedis) -> None:
    """Within one pipelined batch the second copy is skipped; after a broker restart (its
    scripts gone) the batch's one script call is loaded again and works."""
    options = SinkOptions(key_prefix=PREFIX, socket_timeout=2)
    target = CeleryTarget(task="t.twice", queue="qt")
    a, b = envelopes(2)
    sink = CelerySink(private_redis.url, options)
    try:
        results = sink.deliver([Delivery(a, target), Delivery(a, target), Delivery(b, target)])
        assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
        assert queued(redis.Redis.from_url(private_redis.url), "qt") == 2
        private_redis.stop()
        private_redis.start()  # an empty server: no marks, no scripts
        for _ in range(20):  # the pool's old connections fail once, then reconnect
            results = sink.deliver([Delivery(a, target), Delivery(b, target)])
            if all(r.outcome is Outcome.DELIVERED for r in results):
                break
        assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    finally:
        sink.close()
    assert queued(redis.Redis.from_url(private_redis.url), "qt") == 2
