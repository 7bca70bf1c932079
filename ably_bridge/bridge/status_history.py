"""What the status page shows over time: recent rates and latency, recent errors.

This module owns two small, bounded recorders the status endpoint reads:

* :class:`RateHistory` - every ``interval`` seconds (its own daemon thread) one
  sample of the bridge's metrics: events received and delivered per second
  and the delivery latency quantiles (p50, p95) of that interval, estimated
  from the latency histogram's buckets (the bound of the bucket the quantile
  falls in). ``keep`` samples are kept (default: 5 minutes);
* :class:`RecentErrors` - a :class:`logging.Handler` keeping the last WARNING
  and ERROR lines of the ``ably_bridge`` loggers, redacted
  (:func:`~.secret.redact_text`) and cut to 500 characters.

Both are read from the health server's threads under their own lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.secret import redact_text
from ably_bridge.clock import Clock, SystemClock

__all__ = ["RateHistory", "RecentErrors", "Sample", "quantile"]


@dataclass(frozen=True, slots=True)
class Sample:
    at: int  # epoch ms, end of the interval
    received_per_s: float
    delivered_per_s: float
    latency_p50: float | None  # seconds; None: nothing delivered in the interval
    latency_p95: float | None


def quantile(counts: list[int], bounds: tuple[float, ...], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of ``counts`` (per bucket;
    the last bucket is past the last bound and answers that bound)."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    running = 0
    for i, n in enumerate(counts):
        running += n
        if running >= rank and n:
            return bounds[min(i, len(bounds) - 1)]
    return bounds[-1]


class RateHistory:
    """Samples of the metrics every ``interval`` seconds (see the module docstring)."""

    def __init__(
        self,
        metrics: BridgeMetrics,
        *,
        interval: float = 5.0,
        keep: int = 60,
        clock: Clock | None = None,
    ) -> None:
        self._metrics = metrics
        self.interval = interval
        self._clock = clock or SystemClock()
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._last: tuple[float, float, float, list[int]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> Sample | None:
        """Take one sample (the first call only sets the starting point)."""
        m = self._metrics
        now = self._clock.monotonic()
        received = m.received.total()
        confirmed = m.delivered.total()  # delivered or duplicate, every sink
        buckets = m.latency.bucket_totals()
        with self._lock:
            last, self._last = self._last, (now, received, confirmed, buckets)
            if last is None:
                return None
            elapsed = max(1e-9, now - last[0])
            diff = [max(0, a - b) for a, b in zip(buckets, last[3], strict=True)]
            sample = Sample(
                at=self._clock.time_ms(),
                received_per_s=max(0.0, received - last[1]) / elapsed,
                delivered_per_s=max(0.0, confirmed - last[2]) / elapsed,
                latency_p50=quantile(diff, m.latency.buckets, 0.5),
                latency_p95=quantile(diff, m.latency.buckets, 0.95),
            )
            self._samples.append(sample)
            return sample

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def start(self) -> None:
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(
                target=self._run, name="ably-bridge-status-history", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # never let the sampler die silently on a metrics bug
                logging.getLogger(__name__).exception("status history sample failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class RecentErrors(logging.Handler):
    """The last ``keep`` WARNING+ log lines, redacted (see the module docstring)."""

    def __init__(self, keep: int = 50) -> None:
        super().__init__(logging.WARNING)
        self._lines: deque[dict[str, Any]] = deque(maxlen=keep)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = redact_text(record.getMessage())
        except Exception:  # a bad format string: the handler must not raise
            text = redact_text(str(record.msg))
        line = {
            "at": int(record.created * 1000),
            "level": record.levelname,
            "logger": record.name,
            "message": text[:500],
        }
        with self._guard:
            self._lines.append(line)

    def lines(self) -> list[dict[str, Any]]:
        """Oldest first."""
        with self._guard:
            return list(self._lines)

    def install(self, logger_name: str = "ably_bridge") -> RecentErrors:
        logging.getLogger(logger_name).addHandler(self)
        return self

    def uninstall(self, logger_name: str = "ably_bridge") -> None:
        logging.getLogger(logger_name).removeHandler(self)
