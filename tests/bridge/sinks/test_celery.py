"""Celery sink against real brokers (Redis DB 15, RabbitMQ) and a real embedded worker."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.base import Delivery, Outcome, SinkOptions, create_sink
from ably_bridge.bridge.sinks.celery import CelerySink
from ably_bridge.bridge.sinks.celery_redis import supported as push_once_supported
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.support.redis_server import PrivateRedis
from tests.support.services import AMQP_BROKER, REDIS_URL, amqp_available
from workers.guard import WorkerGuard
from workers.settings import queue_type_conf

TASK = "bridge_test.handle_event"
B = EnvelopeBuilder("appX", "test")


class Received:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any], Any]] = []
        self.runs: list[str] = []
        self.lock = threading.Lock()

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= n:
                    return
            time.sleep(0.02)
        raise AssertionError(f"worker received {len(self.items)} of {n} tasks")


def worker_app(
    broker: str, queue: str, task_name: str, received: Received, guard: WorkerGuard
) -> Celery:
    app = Celery("bridge-test-worker", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        result_backend=None,
        task_ignore_result=True,
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_heartbeat=0,  # with heartbeats the embedded AMQP worker takes 10 s to stop
    )

    @app.task(name=task_name, bind=True)
    def handle_event(self: Any, envelope: dict[str, Any]) -> None:
        with received.lock:
            received.items.append((self.request.id, envelope, self.request.get("origin")))
        with guard.once(self.request.id) as first:
            if first:
                with received.lock:
                    received.runs.append(self.request.id)

    return app


@pytest.mark.timeout(60)
def test_worker_receives_the_envelope_once(
    broker: str, queue: str, rclient: redis.Redis, prefix: str
) -> None:
    received = Received()
    guard = WorkerGuard(rclient, prefix=prefix)
    task_name = f"{TASK}_{uuid.uuid4().hex[:8]}"  # task names are process-global in Celery 5.7
    app = worker_app(broker, queue, task_name, received, guard)
    target = CeleryTarget(
        task=task_name, queue=queue, priority=3, expires=60, headers={"origin": "ab"}
    )
    sink = create_sink("celery", broker, SinkOptions(socket_timeout=5))
    assert isinstance(sink, CelerySink)
    env = B.message("chat:1", Message("text", {"a": 1}, id="c:1:0", timestamp=9), "chat")
    other = B.message("chat:1", Message("text", "b", id="c:2:0", timestamp=10), "chat")
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            first = sink.deliver([Delivery(env, target), Delivery(other, target)])
            assert [r.outcome for r in first] == [Outcome.DELIVERED] * 2
            expected_id = celery_task_id("chat", task_name, env.dedup_key)
            assert first[0].detail == expected_id
            # The same event sent again (a replay) carries the same task id...
            (again,) = sink.deliver([Delivery(env, target)])
            assert again.detail == expected_id
            assert again.outcome is Outcome.DELIVERED
            # ...a Redis broker does not queue it again (its push-once mark; with kombu
            # 5.7's internals); on RabbitMQ it is queued again and the worker-side guard
            # runs it once.
            sent = 2 if broker.startswith("redis") and push_once_supported() else 3
            received.wait_for(sent)
            deadline = time.monotonic() + 5
            while len(received.runs) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        sink.close()
    by_id = {task_id: body for task_id, body, _ in received.items}
    assert by_id[expected_id] == env.to_dict()
    assert [task_id for task_id, _, _ in received.items].count(expected_id) == sent - 1
    assert sorted(received.runs) == sorted({expected_id, first[1].detail})
    assert {origin for _, _, origin in received.items} == {"ab"}


def test_broker_outage_is_retryable_and_fast(private_redis: PrivateRedis) -> None:
    sink = CelerySink(private_redis.url, SinkOptions(socket_timeout=0.5))
    target = CeleryTarget(task=TASK, queue="q")
    env = B.message("c", Message("n", "d", id="c:1:0", timestamp=1), "r")
    assert sink.deliver([Delivery(env, target)])[0].outcome is Outcome.DELIVERED
    private_redis.stop()
    started = time.monotonic()
    results = sink.deliver([Delivery(env, target)] * 3)
    assert time.monotonic() - started < 5
    assert [r.outcome for r in results] == [Outcome.RETRY] * 3
    assert results[0].error is not None and sink.retryable(results[0].error)
    assert not sink.healthy()
    private_redis.start()
    assert sink.deliver([Delivery(env, target)])[0].outcome is Outcome.DELIVERED
    assert sink.healthy()
    assert redis.Redis.from_url(private_redis.url).llen("q") == 1  # fresh server: one message
    sink.close()


def test_non_celery_target_is_rejected() -> None:
    from ably_bridge.bridge.config import StreamTarget

    sink = CelerySink(REDIS_URL)
    env = B.message("c", Message("n", "d", id="c:1:0", timestamp=1), "r")
    (result,) = sink.deliver([Delivery(env, StreamTarget(key="x"))])
    assert result.outcome is Outcome.REJECTED
    assert not sink.retryable(TypeError("not JSON serializable"))
    sink.close()


@pytest.mark.timeout(90)
def test_quorum_queue_target_reaches_a_quorum_worker_that_retries(
    rclient: redis.Redis, prefix: str
) -> None:
    """A ``queue_type: quorum`` target and a worker with ABLY_WORKER_QUEUE_TYPE=quorum
    declare the same queue, and a countdown retry goes through the broker."""
    if not amqp_available():
        pytest.skip("RabbitMQ at 127.0.0.1:5672 is not running")
    queue = f"ably-bridge-test-qq-{uuid.uuid4().hex[:10]}"
    task_name = f"{TASK}_{uuid.uuid4().hex[:8]}"
    attempts: list[tuple[str, int]] = []
    app = Celery("bridge-test-quorum", broker=AMQP_BROKER, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_heartbeat=0,
        **queue_type_conf("quorum"),
    )

    @app.task(name=task_name, bind=True)
    def handle_event(self: Any, envelope: dict[str, Any]) -> None:
        attempts.append((envelope["messages"][0]["id"], self.request.retries))
        if self.request.retries == 0:
            raise self.retry(countdown=1)

    target = CeleryTarget(task=task_name, queue=queue, queue_type="quorum")
    sink = CelerySink(AMQP_BROKER, SinkOptions(socket_timeout=5))
    envs = [
        B.message("chat:1", Message("text", i, id=f"c:{i}:0", timestamp=i), "chat")
        for i in range(5)
    ]
    seen: list[str] = []

    def sent_by_send_task(sender: str, headers: dict[str, Any], **_: Any) -> None:
        seen.append(headers["id"])

    try:
        # The bridge declares the queue first (the worker is not up yet)...
        results = sink.deliver([Delivery(env, target) for env in envs[:3]])
        # (with a publish-signal receiver the sink goes through send_task itself)
        signals.before_task_publish.connect(sent_by_send_task, weak=False)
        try:
            results += sink.deliver([Delivery(env, target) for env in envs[3:]])
        finally:
            signals.before_task_publish.disconnect(sent_by_send_task)
        assert [r.outcome for r in results] == [Outcome.DELIVERED] * 5
        assert len(seen) == 2
        # ...and the worker's own declaration of it is accepted: same type, same exchange.
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            deadline = time.monotonic() + 30
            while len(attempts) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            with pytest.raises(Exception, match="x-queue-type"):
                channel.queue_declare(queue, durable=True, auto_delete=False)  # not classic
    finally:
        sink.close()
        with app.connection_for_write() as conn:
            conn.channel().queue_delete(queue)
            conn.channel().exchange_delete(queue)
    assert sorted(attempts) == sorted([(f"c:{i}:0", n) for i in range(5) for n in (0, 1)])
