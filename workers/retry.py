"""The worker retry policy: which failures are retried, and after how long.

This module owns :class:`RetryPolicy` (an immutable value, urllib3-Retry
style: computing a delay is pure, sleeping is Celery's job through
``Task.retry(countdown=...)``) and :func:`classify`, which sorts a failure into
*retry* or *fail now*:

* retried: HTTP 5xx, Ably's network codes (50002 unreachable, 50003 timeout),
  transport errors, and 429 rate limits (waiting at least the server's
  ``Retry-After`` when it sent one, else ``rate_limit_delay``);
* failed at once: every other 4xx (bad key, forbidden channel, oversized
  message, bad arguments) and anything that is not an Ably error.

Delays grow exponentially from ``base_delay`` up to ``max_delay``, with jitter:
the delay is drawn from ``[d * (1 - jitter), d]``. :meth:`RetryPolicy.schedule_bound`
is the longest a full retry schedule can take, used to check that a publish's
last retry still starts inside Ably's idempotent-publish window.

A limit that is Celery's, not ours: ``Task.retry`` re-publishes the task to the
broker, so if the broker is unreachable at that moment the retry raises in the
worker and the task fails instead of being retried later.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ably_bridge.errors import AblyException, ErrorCode

__all__ = ["Decision", "RetryPolicy", "classify"]

log = logging.getLogger(__name__)

_NETWORK_CODES = frozenset(
    {ErrorCode.INTERNAL_CONNECTION_ERROR, ErrorCode.TIMEOUT_ERROR, 80003, 80014}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to retry, and the least delay the server asked for (seconds)."""

    retryable: bool
    min_delay: float | None = None  # the server's Retry-After, when it sent one
    rate_limited: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by ``max_retries`` and ``max_delay``."""

    base_delay: float = 1.0
    max_delay: float = 8.0
    jitter: float = 0.5
    max_retries: int = 8
    rate_limit_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("retry delays must satisfy 0 < base_delay <= max_delay")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("retry jitter must be between 0 and 1")
        if self.max_retries < 0 or self.rate_limit_delay < 0:
            raise ValueError("max_retries and rate_limit_delay must not be negative")

    def ceiling(self, retries: int) -> float:
        """The un-jittered delay before retry number ``retries + 1``."""
        return min(self.max_delay, self.base_delay * (2.0 ** min(retries, 62)))

    def delay(self, retries: int, rng: random.Random | None = None, floor: float = 0.0) -> float:
        """The countdown before the next attempt, after ``retries`` retries so far."""
        top = self.ceiling(retries)
        low = top * (1.0 - self.jitter)
        drawn = (rng or random).uniform(low, top)
        return max(drawn, floor)

    def countdown(
        self, retries: int, decision: Decision, rng: random.Random | None = None
    ) -> float:
        """The countdown for a retryable ``decision``: 429s wait at least what was asked."""
        floor = 0.0
        if decision.rate_limited:
            floor = decision.min_delay if decision.min_delay is not None else self.rate_limit_delay
        return self.delay(retries, rng, floor)

    def schedule_bound(self) -> float:
        """The longest the whole schedule of countdowns can add up to (no rate limits)."""
        return sum(self.ceiling(n) for n in range(self.max_retries))


def classify(exc: BaseException, retry_after: float | None = None) -> Decision:
    """Sort a task failure into retry (with a least delay) or fail now."""
    if not isinstance(exc, AblyException):
        if isinstance(exc, ConnectionError | TimeoutError):
            return Decision(True, reason=type(exc).__name__)
        return Decision(False, reason=type(exc).__name__)
    status = exc.status_code
    if status == 429 or 42910 <= exc.code < 43000:
        return Decision(
            True, min_delay=retry_after, rate_limited=True, reason=f"rate limited ({exc.code})"
        )
    if status >= 500 or exc.code in _NETWORK_CODES:
        return Decision(True, reason=f"transient ({exc.code}/{status})")
    return Decision(False, reason=f"refused ({exc.code}/{status})")
