"""The worker retry policy: which failures are retried, and after how long.

This module owns :func:`classify`, which sorts a failure into *retry* or
*fail now*, and :func:`countdown`, the delay before the next try under the
package's one :class:`~ably_bridge.protocol.retry.RetryPolicy` (an immutable
value, urllib3-Retry style: computing a delay is pure, sleeping is Celery's job
through ``Task.retry(countdown=...)``; re-exported here, with the workers'
default :data:`WORKER_RETRY`):

* retried: HTTP 5xx, Ably's network codes (50002 unreachable, 50003 timeout),
  transport errors, and 429 rate limits (waiting at least the server's
  ``Retry-After`` when it sent one - read from the headers the error carries -
  else ``rate_limit_delay``);
* failed at once: every other 4xx (bad key, forbidden channel, oversized
  message, bad arguments) and anything that is not an Ably error.

Delays grow exponentially from ``base`` up to ``max_delay``, with jitter:
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
from ably_bridge.protocol.retry import RetryPolicy

__all__ = [
    "WORKER_RETRY",
    "RetryDecision",
    "RetryPolicy",
    "classify",
    "countdown",
    "retry_after_of",
]

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 60.0  # a longer Retry-After is waited out in steps of this
_NETWORK_CODES = frozenset(
    {ErrorCode.INTERNAL_CONNECTION_ERROR, ErrorCode.TIMEOUT_ERROR, 80003, 80014}
)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry, and the least delay the server asked for (seconds)."""

    retryable: bool
    min_delay: float | None = None  # the server's Retry-After, when it sent one
    rate_limited: bool = False
    reason: str = ""


# The workers' default: 1, 2, 4, 8, 8... seconds (each less up to half), 8 retries.
WORKER_RETRY = RetryPolicy(
    1.0, multiplier=2.0, max_delay=8.0, jitter=0.5, max_retries=8, rate_limit_delay=1.0
)


def countdown(
    policy: RetryPolicy, retries: int, decision: RetryDecision, rng: random.Random | None = None
) -> float:
    """The countdown after ``retries`` retries so far: 429s wait at least what was asked."""
    floor = 0.0
    if decision.rate_limited:
        floor = decision.min_delay if decision.min_delay is not None else policy.rate_limit_delay
    return policy.delay(retries + 1, (rng or random).random(), floor)


def retry_after_of(exc: AblyException) -> float | None:
    """The ``Retry-After`` (delta seconds, capped) of the response ``exc`` came from, if any.

    HTTP dates are ignored; the REST funnel puts a response's headers on its error.
    """
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def classify(exc: BaseException, retry_after: float | None = None) -> RetryDecision:
    """Sort a task failure into retry (with a least delay) or fail now.

    ``retry_after`` defaults to the ``Retry-After`` header of the failed response.
    """
    if not isinstance(exc, AblyException):
        if isinstance(exc, ConnectionError | TimeoutError):
            return RetryDecision(True, reason=type(exc).__name__)
        return RetryDecision(False, reason=type(exc).__name__)
    status = exc.status_code
    if status == 429 or 42910 <= exc.code < 43000:
        if retry_after is None:
            retry_after = retry_after_of(exc)
        return RetryDecision(
            True, min_delay=retry_after, rate_limited=True, reason=f"rate limited ({exc.code})"
        )
    if status >= 500 or exc.code in _NETWORK_CODES:
        return RetryDecision(True, reason=f"transient ({exc.code}/{status})")
    return RetryDecision(False, reason=f"refused ({exc.code}/{status})")
