"""Retry timing for the whole package: one immutable policy, pure arithmetic.

This module owns :class:`RetryPolicy`, the one backoff rule that the realtime
client, the bridge's sinks and backfills, and the workers' tasks use::

    ceiling(n) = min(max_delay, base * growth(n))
    delay(n)   = max(floor, ceiling(n) * (1 - jitter * (1 - u)))

where ``n`` is 1 for the first retry and ``u`` a uniform sample in ``[0, 1]``
(``u = 1`` gives the ceiling). ``growth`` is ``multiplier ** (n - 1)`` when a
``multiplier`` is set (the bridge and the workers: exponential), else RTB1's
curve for the realtime client::

    RTB1a: growth(n) = min((n + 2) / 3, 2)        RTB1b: jitter 0.2, so [0.8, 1.0]

used for DISCONNECTED connections (base ``disconnected_retry_timeout``) and
SUSPENDED channels (base ``channel_retry_timeout``).

Like urllib3's ``Retry``, a :class:`RetryPolicy` is a value: computing a delay
reads no clock and draws no random number. The caller supplies the sample
(the cores take it from a ``random.Random`` the driver owns), so tests can pin
it; sleeping is the caller's job too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RetryPolicy", "RetrySettingsLike", "backoff_coefficient", "jitter_coefficient"]

RTB1_JITTER = 0.2  # RTB1b: the jitter coefficient lies in [0.8, 1.0]
MAX_BACKOFF = 2.0  # RTB1a: the coefficient stops growing at 2
_MAX_EXPONENT = 64  # multiplier ** large overflows a float; the cap is reached long before


def backoff_coefficient(attempt: int) -> float:
    """RTB1a: ``min((n + 2) / 3, 2)`` for the ``n``-th retry (1-based): 1, 4/3, 5/3, 2, 2..."""
    n = max(1, attempt)
    return min((n + 2) / 3, MAX_BACKOFF)


def jitter_coefficient(sample: float, jitter: float = RTB1_JITTER) -> float:
    """Map a uniform sample in ``[0, 1]`` onto ``[1 - jitter, 1]`` (RTB1b: ``[0.8, 1.0]``)."""
    clamped = min(1.0, max(0.0, sample))
    return 1.0 - jitter * (1.0 - clamped)


class RetrySettingsLike(Protocol):
    """A configuration that names a policy (the bridge's ``delivery.retry``)."""

    @property
    def initial(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def max_delay(self) -> float: ...
    @property
    def jitter(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff with jitter: how long before retry ``n``, and whether retrying is over.

    ``max_retries`` (None: no limit) bounds the retries after a first failed
    attempt; ``rate_limit_delay`` is the least delay after a rate-limit refusal
    that named no ``Retry-After`` (the workers' tasks).
    """

    base: float
    multiplier: float | None = None  # None: RTB1a's curve
    max_delay: float = math.inf
    jitter: float = RTB1_JITTER
    max_retries: int | None = None
    rate_limit_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.max_delay < self.base:
            raise ValueError("retry delays must satisfy 0 < base <= max_delay")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("retry jitter must be between 0 and 1")
        if self.multiplier is not None and self.multiplier < 1.0:
            raise ValueError("a retry multiplier must be at least 1")
        if (self.max_retries is not None and self.max_retries < 0) or self.rate_limit_delay < 0:
            raise ValueError("max_retries and rate_limit_delay must not be negative")

    @classmethod
    def from_settings(cls, settings: RetrySettingsLike) -> RetryPolicy:
        """The policy a configuration names (``max_attempts`` counts the first try; 0: none)."""
        attempts = settings.max_attempts
        return cls(
            base=settings.initial,
            multiplier=settings.multiplier,
            max_delay=settings.max_delay,
            jitter=settings.jitter,
            max_retries=attempts - 1 if attempts > 0 else None,
        )

    def ceiling(self, attempt: int) -> float:
        """The longest delay before retry ``attempt`` (1-based): no jitter taken off."""
        n = max(1, attempt)
        if self.multiplier is None:
            growth = backoff_coefficient(n)
        else:
            growth = self.multiplier ** min(n - 1, _MAX_EXPONENT)
        return min(self.max_delay, self.base * growth)

    def delay(self, attempt: int, sample: float, floor: float = 0.0) -> float:
        """Seconds before retry ``attempt`` (1-based) for a uniform ``sample``; >= ``floor``."""
        return max(floor, self.ceiling(attempt) * jitter_coefficient(sample, self.jitter))

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay retry ``attempt`` can get."""
        return self.delay(attempt, 0.0), self.delay(attempt, 1.0)

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` failed attempts used up the retries allowed."""
        return self.max_retries is not None and failures > self.max_retries

    def schedule_bound(self) -> float:
        """The longest the whole schedule of delays can add up to (inf without a limit)."""
        if self.max_retries is None:
            return math.inf
        return sum(self.ceiling(n) for n in range(1, self.max_retries + 1))
