"""The one retry policy: RTB1 (UTS connection/backoff_jitter_test) and the exponential curve."""

from __future__ import annotations

import random

import pytest

from ably_bridge.protocol.retry import RetryPolicy, backoff_coefficient, jitter_coefficient


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 4 / 3), (3, 5 / 3), (4, 2.0), (5, 2.0), (50, 2.0), (0, 1.0)],
)
def test_rtb1a_backoff_coefficient(attempt: int, expected: float) -> None:
    assert backoff_coefficient(attempt) == pytest.approx(expected)


def test_rtb1b_jitter_between_0_8_and_1() -> None:
    rng = random.Random(7)
    samples = [jitter_coefficient(rng.random()) for _ in range(2000)]
    assert min(samples) >= 0.8
    assert max(samples) <= 1.0
    assert max(samples) - min(samples) > 0.15  # roughly uniform, not constant
    assert jitter_coefficient(-3) == 0.8
    assert jitter_coefficient(9) == 1.0


def test_rtb1_combined_delay_and_bounds() -> None:
    policy = RetryPolicy(15.0)
    assert policy.delay(1, 1.0) == pytest.approx(15.0)
    assert policy.delay(2, 0.0) == pytest.approx(15.0 * 4 / 3 * 0.8)
    low, high = policy.bounds(4)
    assert low == pytest.approx(24.0)
    assert high == pytest.approx(30.0)


def test_policy_is_an_immutable_value() -> None:
    policy = RetryPolicy(1.0)
    with pytest.raises(AttributeError):
        policy.base = 2.0  # type: ignore[misc]
    assert policy == RetryPolicy(1.0)


def test_exponential_curve_is_capped_and_bounded_by_the_retry_limit() -> None:
    policy = RetryPolicy(1.0, multiplier=2.0, max_delay=8.0, jitter=0.5, max_retries=8)
    assert [policy.ceiling(n) for n in (0, 1, 2, 3, 4, 5, 1000)] == [1, 1, 2, 4, 8, 8, 8]
    assert policy.bounds(3) == (2.0, 4.0)
    assert policy.delay(1, 1.0, floor=3.0) == 3.0  # a server's Retry-After wins
    assert policy.schedule_bound() == 1 + 2 + 4 + 8 * 5
    assert not policy.exhausted(8) and policy.exhausted(9)
    assert RetryPolicy(1.0).schedule_bound() == float("inf") and not RetryPolicy(1.0).exhausted(99)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0.0},
        {"base": 2.0, "max_delay": 1.0},
        {"base": 1.0, "jitter": 1.5},
        {"base": 1.0, "multiplier": 0.5},
        {"base": 1.0, "max_retries": -1},
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
