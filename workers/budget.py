"""The per-process retry budget: a circuit breaker in front of every Ably request of a worker.

This module owns :class:`RetryBudget` and the worker metrics it keeps
(:data:`METRICS`, rendered in the Prometheus text format by :func:`render_metrics`).

Without it, an Ably outage (5xx, 429) multiplies the load: every queued task
makes its request, fails, and is retried on its own schedule, so the request
rate grows with the queue. With it, the worker process as a whole backs off:

* **closed** - requests go out; a retryable failure (5xx, 429, network) *opens*
  the breaker for a backoff: the server's ``Retry-After`` when it sent one, else
  ``base_delay * 2**(failures-1)`` capped at ``max_delay``, with jitter;
* **open** - no request goes out; a task that would make one is re-scheduled
  for when the backoff ends (a *deferral*: it does not use up the task's
  retries, and a publish that never reached Ably does not start its
  idempotency deadline);
* after the backoff one task probes (**half-open**) while the others keep
  waiting; its success closes the breaker, its failure opens it again for a
  longer backoff.

So while Ably is failing a worker process sends about one request per backoff
(plus the requests already in flight when it started failing), and when Ably
recovers the deferred tasks run normally. Refusals (other 4xx) do not touch the
budget. The clock and the random source are injectable (tests use a fake clock).

Metrics (per process): ``ably_worker_backoff_seconds`` (gauge, the backoff
started last; 0 when requests flow again), ``ably_worker_breaker_open`` (gauge 0/1),
``ably_worker_backoffs_total`` (counter by ``reason``: ``server_error``,
``rate_limited``), ``ably_worker_deferred_total`` (counter: tasks re-scheduled
without a request).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ably_bridge.bridge.metrics import Counter, Gauge, Registry
from ably_bridge.protocol.retry import RetryPolicy

__all__ = ["METRICS", "RetryBudget", "WorkerMetrics", "render_metrics"]

log = logging.getLogger(__name__)


class WorkerMetrics:
    """The worker process's metrics (one registry per process)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.backoff_seconds = r.register(
            Gauge("ably_worker_backoff_seconds", "The backoff started last (0: requests flow)")
        )
        self.breaker_open = r.register(
            Gauge("ably_worker_breaker_open", "1 while the worker holds its Ably requests back")
        )
        self.backoffs = r.register(
            Counter(
                "ably_worker_backoffs_total",
                "Backoffs started after a retryable Ably failure",
                ["reason"],
            )
        )
        self.deferred = r.register(
            Counter("ably_worker_deferred_total", "Tasks re-scheduled without a request to Ably")
        )


METRICS = WorkerMetrics()


def render_metrics() -> str:
    """This process's worker metrics in the Prometheus text format."""
    return METRICS.registry.render()


class RetryBudget:
    """A circuit breaker shared by every task of one worker process (thread-safe)."""

    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        jitter: float = 0.2,
        probe_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if not 0 < base_delay <= max_delay:
            raise ValueError("budget delays must satisfy 0 < base_delay <= max_delay")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("budget jitter must be between 0 and 1")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self._policy = RetryPolicy(base_delay, multiplier=2.0, max_delay=max_delay, jitter=jitter)
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._rng = rng
        self.metrics = metrics or METRICS
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probe_until: float | None = None  # a probe is in flight until then

    # -- asking ------------------------------------------------------------------
    def admit(self) -> float | None:
        """``None``: make the request now. Else the seconds to wait before trying again."""
        with self._lock:
            if self._open_until is None:
                return None
            now = self._clock()
            if now < self._open_until:
                return self._spread(self._open_until - now)
            if self._probe_until is not None and now < self._probe_until:
                return self._spread(min(self.base_delay, self._probe_until - now))
            self._probe_until = now + self.probe_timeout  # this caller probes
            self.metrics.backoff_seconds.set(0.0)
            return None

    def backoff_left(self) -> float:
        """Seconds until requests may go again (spread like :meth:`admit`), 0 when closed."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return self._spread(max(0.0, self._open_until - self._clock()))

    def defer(self, wait: float) -> float:
        """Count a task re-scheduled for ``wait`` seconds without a request; returns ``wait``."""
        self.metrics.deferred.inc()
        return wait

    # -- telling -----------------------------------------------------------------
    def record_success(self) -> None:
        with self._lock:
            if self._open_until is not None:
                log.info("Ably answers again: the worker's requests resume")
            self._failures = 0
            self._open_until = None
            self._probe_until = None
        self.metrics.breaker_open.set(0.0)
        self.metrics.backoff_seconds.set(0.0)

    def record_failure(self, retry_after: float | None = None, rate_limited: bool = False) -> float:
        """A retryable failure: open (again) for the next backoff; returns it in seconds."""
        with self._lock:
            self._failures += 1
            # At least the server's Retry-After, when it sent one.
            backoff = self._policy.delay(self._failures, self._rng(), retry_after or 0.0)
            until = self._clock() + backoff
            if self._open_until is None or until > self._open_until:
                self._open_until = until
            self._probe_until = None
            failures = self._failures
        self.metrics.breaker_open.set(1.0)
        self.metrics.backoff_seconds.set(backoff)
        self.metrics.backoffs.inc(1.0, "rate_limited" if rate_limited else "server_error")
        log.warning(
            "Ably failing (%d in a row): the worker holds its requests back for %.2fs",
            failures,
            backoff,
        )
        return backoff

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def _spread(self, wait: float) -> float:
        """Waiting tasks come back spread over a little more than ``wait``."""
        return wait + self.base_delay * self.jitter * self._rng()
