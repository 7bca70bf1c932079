"""The per-process retry budget, sans I/O: backoff growth, Retry-After, one probe, metrics."""

from __future__ import annotations

import pytest

from ably_bridge.clock import FakeClock
from workers.budget import RetryBudget, WorkerMetrics


def make(clock: FakeClock, **options: float) -> tuple[RetryBudget, WorkerMetrics]:
    metrics = WorkerMetrics()
    budget = RetryBudget(
        base_delay=1.0, max_delay=8.0, jitter=0.0, clock=clock.monotonic, rng=lambda: 0.5,
        metrics=metrics, **options,
    )  # fmt: skip
    return budget, metrics


def test_closed_admits_and_a_failure_holds_every_request_back() -> None:
    clock = FakeClock()
    budget, metrics = make(clock)
    assert budget.admit() is None
    assert budget.record_failure() == 1.0
    assert budget.admit() == pytest.approx(1.0)
    clock.sleep(0.4)
    assert budget.admit() == pytest.approx(0.6)
    assert metrics.breaker_open.value() == 1.0
    assert metrics.backoff_seconds.value() == 1.0
    assert metrics.backoffs.value("server_error") == 1.0


def test_after_the_backoff_one_probe_goes_and_the_others_wait() -> None:
    clock = FakeClock()
    budget, _ = make(clock)
    budget.record_failure()
    clock.sleep(1.0)
    assert budget.admit() is None  # the probe
    assert budget.admit() is not None  # everyone else waits for it
    budget.record_failure()  # the probe failed: a longer backoff
    assert budget.admit() == pytest.approx(2.0)
    clock.sleep(2.0)
    assert budget.admit() is None
    budget.record_success()
    assert budget.admit() is None and budget.admit() is None
    assert not budget.is_open


def test_backoff_doubles_to_its_cap_and_a_lost_probe_times_out() -> None:
    clock = FakeClock()
    budget, _ = make(clock, probe_timeout=5.0)
    delays = [budget.record_failure() for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    clock.sleep(8.0)
    assert budget.admit() is None  # a probe that never reports back...
    clock.sleep(5.0)
    assert budget.admit() is None  # ...is replaced after probe_timeout


def test_retry_after_is_honoured_when_longer() -> None:
    clock = FakeClock()
    budget, metrics = make(clock)
    assert budget.record_failure(retry_after=20.0, rate_limited=True) == 20.0
    clock.sleep(19.0)
    assert budget.admit() == pytest.approx(1.0)
    assert metrics.backoffs.value("rate_limited") == 1.0


def test_waiting_tasks_are_spread_and_counted() -> None:
    clock = FakeClock()
    metrics = WorkerMetrics()
    draws = iter([1.0, 0.0, 1.0])
    budget = RetryBudget(
        base_delay=1.0, max_delay=8.0, jitter=0.5, clock=clock.monotonic,
        rng=lambda: next(draws), metrics=metrics,
    )  # fmt: skip
    budget.record_failure()  # jitter draw 1: the whole 1.0 s
    assert budget.admit() == pytest.approx(1.0)
    assert budget.admit() == pytest.approx(1.5)
    budget.defer(1.5)
    assert metrics.deferred.value() == 1.0
    assert "ably_worker_deferred_total 1" in metrics.registry.render()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        RetryBudget(base_delay=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryBudget(base_delay=2, max_delay=1)
    with pytest.raises(ValueError, match="jitter"):
        RetryBudget(jitter=2)
