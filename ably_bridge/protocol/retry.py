"""Retry timing for the realtime client (RTB1): an immutable policy, pure arithmetic.

This module owns the backoff-with-jitter rule used for DISCONNECTED connections
(base ``disconnected_retry_timeout``) and SUSPENDED channels (base
``channel_retry_timeout``)::

    delay(n) = base * min((n + 2) / 3, 2) * jitter,   jitter in [0.8, 1.0]

where ``n`` is 1 for the first retry. Like urllib3's ``Retry``, a
:class:`RetryPolicy` is a value: computing a delay reads no clock and draws no
random number. The caller supplies the uniform sample ``u`` in ``[0, 1]`` (the
cores take it from a ``random.Random`` the driver owns), so tests can pin it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_coefficient", "jitter_coefficient"]

JITTER_LOW = 0.8  # RTB1b: the jitter coefficient lies in [0.8, 1.0]
MAX_BACKOFF = 2.0  # RTB1a: the coefficient stops growing at 2


def backoff_coefficient(attempt: int) -> float:
    """RTB1a: ``min((n + 2) / 3, 2)`` for the ``n``-th retry (1-based): 1, 4/3, 5/3, 2, 2..."""
    n = max(1, attempt)
    return min((n + 2) / 3, MAX_BACKOFF)


def jitter_coefficient(sample: float) -> float:
    """RTB1b: map a uniform sample in ``[0, 1]`` onto ``[0.8, 1.0]``."""
    clamped = min(1.0, max(0.0, sample))
    return JITTER_LOW + (1.0 - JITTER_LOW) * clamped


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The RTB1 delay rule for one base timeout (seconds)."""

    base: float

    def delay(self, attempt: int, sample: float) -> float:
        """Seconds to wait before retry ``attempt`` (1-based), given a uniform ``sample``."""
        return self.base * backoff_coefficient(attempt) * jitter_coefficient(sample)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay retry ``attempt`` can get."""
        return self.delay(attempt, 0.0), self.delay(attempt, 1.0)
