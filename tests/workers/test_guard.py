"""The worker guard against a real Redis: a task id runs once, a failure releases it."""

from __future__ import annotations

import pytest
import redis

from ably_bridge.bridge.dedup import celery_task_id
from workers.guard import WorkerGuard


def test_worker_guard_runs_a_task_id_once(rclient: redis.Redis, prefix: str) -> None:
    guard = WorkerGuard(rclient, prefix=prefix, lock_ttl=30)
    other = WorkerGuard(rclient, prefix=prefix, lock_ttl=30)
    task_id = celery_task_id("r", "t.x", "m:c:1:0")
    runs = []
    with guard.once(task_id) as first:
        assert first
        assert other.claim(task_id) == WorkerGuard.BUSY  # a concurrent redelivery waits out
        runs.append(1)
    with other.once(task_id) as again:
        assert not again
    assert guard.is_done(task_id) and runs == [1]


def test_worker_guard_releases_on_failure(rclient: redis.Redis, prefix: str) -> None:
    guard = WorkerGuard(rclient, prefix=prefix)

    def failing_task() -> None:
        with guard.once("t1") as first:
            assert first
            raise RuntimeError("task failed")

    with pytest.raises(RuntimeError):
        failing_task()
    assert not guard.is_done("t1")
    with guard.once("t1") as retry:
        assert retry
    assert guard.is_done("t1")
