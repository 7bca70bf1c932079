"""RTB1 backoff and jitter (UTS connection/backoff_jitter_test)."""

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
