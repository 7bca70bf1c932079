"""Metrics: a small Prometheus registry, the bridge's metrics, and a metering sink wrapper.

This module owns the text exposition (format 0.0.4) without a dependency:
:class:`Counter`, :class:`Gauge` and :class:`Histogram` with labels, a
:class:`Registry` that renders them, and :class:`BridgeMetrics`, the metrics
of the daemon:

==================================================  =========  ==========================
``ably_bridge_events_received_total``               counter    ``source``
``ably_bridge_events_delivered_total``              counter    ``sink``, ``outcome``
``ably_bridge_duplicates_skipped_total``            counter    (in-memory and sink-side)
``ably_bridge_events_backfilled_total``             counter
``ably_bridge_presence_history_unavailable_total``  counter    backfills without presence history
``ably_bridge_dead_letters_total``                  counter    ``reason``
``ably_bridge_sink_retries_total``                  counter    ``sink``
``ably_bridge_backpressure_pauses_total``           counter
``ably_bridge_held_event_drains_total``             counter    held live events offered again
``ably_bridge_buffer_depth``                        gauge
``ably_bridge_checkpoint_lag_seconds``              gauge      age of the oldest unconfirmed event
``ably_bridge_connection_state``                    gauge      ``state`` (1 for the current one)
``ably_bridge_channels``                            gauge      ``phase``
``ably_bridge_delivery_latency_seconds``            histogram  event timestamp -> sink confirmed
``ably_bridge_connections``                         gauge      ``state``: realtime connections
``ably_bridge_shards_owned``                        gauge      shards this replica bridges
``ably_bridge_shard_lease_renewals_total``          counter    successful lease renewal rounds
``ably_bridge_shard_leases_acquired_total``         counter    shards claimed
``ably_bridge_shard_leases_released_total``         counter    shards handed over (rebalance, stop)
``ably_bridge_shard_lease_losses_total``            counter    shards lost (lease expired/taken)
``ably_bridge_fenced_total``                        counter    writes refused by a shard fence
==================================================  =========  ==========================

Counters owned by the dispatcher are copied in by :meth:`BridgeMetrics.sync_dispatch`
(on the delivery thread), so the hot path never takes a metrics lock for them.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ably_bridge.bridge.secret import redact_text
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, Sink
from ably_bridge.clock import Clock, SystemClock

if TYPE_CHECKING:
    from ably_bridge.bridge.dispatch import DispatchStats

__all__ = [
    "CONTENT_TYPE",
    "BridgeMetrics",
    "Counter",
    "Gauge",
    "Histogram",
    "MeteredSink",
    "Registry",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

LabelValues = tuple[str, ...]
_M = TypeVar("_M", bound="_Metric")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()
        self._keys: dict[Sequence[str], LabelValues] = {}  # label values as given -> key

    def _key(self, labels: Sequence[str]) -> LabelValues:
        # Hot path (an increment per received batch): label values seen before
        # are one dict lookup away from their key (dict reads need no lock).
        key = self._keys.get(labels)
        if key is None:
            if len(labels) != len(self.label_names):
                raise ValueError(f"{self.name} takes labels {self.label_names}")
            # The endpoint is unauthenticated: no credential in a label, whatever its form.
            key = tuple(redact_text(str(v)) for v in labels)
            if len(self._keys) < 4096:
                self._keys[labels] = key
        return key

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_total(self, total: float, *labels: str) -> None:
        """Copy a total counted elsewhere (never decreases the exported value)."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = max(total, self._values.get(key, 0.0))

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        """The sum over every label set."""
        with self._lock:
            return sum(self._values.values())

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def replace(self, values: dict[LabelValues, float]) -> None:
        """Set every label set at once (label sets not given disappear)."""
        with self._lock:
            self._values = {self._key(k): float(v) for k, v in values.items()}


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def observe_many(self, values: Iterable[float], *labels: str) -> None:
        """Observe several values under one lock (the hot path of a sink batch)."""
        key = self._key(labels)
        buckets = self.buckets
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(buckets) + 1)
            total = 0.0
            for value in values:
                counts[bisect_left(buckets, value)] += 1
                total += value
            self._sums[key] = self._sums.get(key, 0.0) + total

    def count(self, *labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def bucket_totals(self) -> list[int]:
        """Observations per bucket (not cumulative; the last is past every bound),
        summed over every label set."""
        out = [0] * (len(self.buckets) + 1)
        with self._lock:
            for counts in self._counts.values():
                for i, n in enumerate(counts):
                    out[i] += n
        return out

    def render(self) -> list[str]:
        out: list[str] = []
        with self._lock:
            items = sorted((k, list(c), self._sums[k]) for k, c in self._counts.items())
        for key, counts, total in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return out


class Registry:
    """Holds metrics and renders the exposition text."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class BridgeMetrics:
    """The daemon's metrics (see the module docstring)."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        p = "ably_bridge_"
        self.received = r.register(
            Counter(p + "events_received_total", "Events received from Ably.", ["source"])
        )
        self.delivered = r.register(
            Counter(
                p + "events_delivered_total",
                "Deliveries confirmed by a sink (outcome delivered or duplicate).",
                ["sink", "outcome"],
            )
        )
        self.duplicates = r.register(
            Counter(p + "duplicates_skipped_total", "Events skipped as already delivered.")
        )
        self.backfilled = r.register(
            Counter(p + "events_backfilled_total", "Messages read from history to close gaps.")
        )
        self.presence_history_unavailable = r.register(
            Counter(
                p + "presence_history_unavailable_total",
                "Backfills that could not read the channel's presence history.",
            )
        )
        self.dead_letters = r.register(
            Counter(
                p + "dead_letters_total", "Events written to the dead-letter stream.", ["reason"]
            )
        )
        self.retries = r.register(
            Counter(
                p + "sink_retries_total", "Failed sink attempts that will be retried.", ["sink"]
            )
        )
        self.pauses = r.register(
            Counter(p + "backpressure_pauses_total", "Channels paused because a buffer was full.")
        )
        self.held_drains = r.register(
            Counter(
                p + "held_event_drains_total",
                "Times a channel's held live events (behind a backfill or a full buffer) "
                "were offered to the dispatcher again.",
            )
        )
        self.continuity = r.register(
            Counter(p + "continuity_losses_total", "Attaches without continuity (backfilled).")
        )
        self.buffer_depth = r.register(Gauge(p + "buffer_depth", "Deliveries waiting for sinks."))
        self.checkpoint_lag = r.register(
            Gauge(p + "checkpoint_lag_seconds", "Age of the oldest event not yet checkpointed.")
        )
        self.connection = r.register(
            Gauge(p + "connection_state", "1 for the current Ably connection state.", ["state"])
        )
        self.channels = r.register(Gauge(p + "channels", "Channels by daemon phase.", ["phase"]))
        self.latency = r.register(
            Histogram(
                p + "delivery_latency_seconds",
                "Seconds from the event's Ably timestamp to its sink confirmation.",
                ["sink"],
            )
        )

        self.connections = r.register(
            Gauge(p + "connections", "Realtime connections by state.", ["state"])
        )
        self.shards_owned = r.register(
            Gauge(p + "shards_owned", "Shards of the channel space this replica bridges.")
        )
        self.lease_renewals = r.register(
            Counter(p + "shard_lease_renewals_total", "Successful shard lease renewal rounds.")
        )
        self.leases_acquired = r.register(
            Counter(p + "shard_leases_acquired_total", "Shard leases claimed.")
        )
        self.leases_released = r.register(
            Counter(p + "shard_leases_released_total", "Shard leases handed over.")
        )
        self.lease_losses = r.register(
            Counter(p + "shard_lease_losses_total", "Shard leases lost (expired or taken).")
        )
        self.fenced = r.register(
            Counter(p + "fenced_total", "Writes refused by a shard fence (stale lease).")
        )

    def sync_dispatch(self, stats: DispatchStats) -> None:
        """Copy the dispatcher's own counters (called on the delivery thread)."""
        self.duplicates.set_total(stats.skipped + stats.duplicates)
        self.fenced.set_total(stats.fenced)
        for reason, n in stats.by_reason.items():
            self.dead_letters.set_total(n, reason)

    def render(self) -> str:
        return self.registry.render()


class MeteredSink:
    """Wraps a sink to count its outcomes and delivery latency under a ``sink`` label.

    It also says, once, when the sink was first reached and when it is reached
    again after failures: a sink connects on its first delivery, so "set up"
    is not "reachable".

    It also keeps, for the status endpoint, the count of each outcome
    (:attr:`outcomes`, by :class:`~.sinks.base.Outcome` value) and the last
    error (:attr:`last_error`: redacted message, Ably or sink code, epoch ms).
    """

    def __init__(
        self, sink: Sink, label: str, metrics: BridgeMetrics, clock: Clock | None = None
    ) -> None:
        self.inner = sink
        self.label = label
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._reached: bool | None = None  # None: not tried yet
        self.outcomes: dict[str, int] = {}
        self.last_error: tuple[str, int | None, int] | None = None

    def __repr__(self) -> str:
        return f"sink {self.label}"

    def _note_reach(self, reached: bool) -> None:
        if reached and self._reached is not True:
            again = "again " if self._reached is False else ""
            logger.info("sink %s reached %s(deliveries accepted)", self.label, again,
                        extra={"sink": self.label})  # fmt: skip
        self._reached = reached

    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        try:
            results = self.inner.deliver(batch)
        except Exception as exc:
            self._note_error(exc, self._clock.time_ms())
            raise
        now_ms = self._clock.time_ms()
        m = self._metrics
        retried = False
        delivered = duplicates = 0
        latencies: list[float] = []
        other: dict[str, int] | None = None
        for delivery, result in zip(batch, results, strict=False):
            outcome = result.outcome
            if outcome is Outcome.DELIVERED:
                delivered += 1
                ts = delivery.envelope.timestamp
                if ts > 0:
                    latencies.append(max(0.0, (now_ms - ts) / 1000.0))
            elif outcome is Outcome.DUPLICATE:
                duplicates += 1
            else:  # retry, rejected, fenced: rare, counted one by one
                other = other if other is not None else {}
                other[outcome.value] = other.get(outcome.value, 0) + 1
                if result.error is not None:
                    self._note_error(result.error, now_ms)
                if outcome is Outcome.RETRY:
                    retried = True
        tally = self.outcomes
        if delivered:
            tally["delivered"] = tally.get("delivered", 0) + delivered
        if duplicates:
            tally["duplicate"] = tally.get("duplicate", 0) + duplicates
        if other:
            for name, n in other.items():
                tally[name] = tally.get(name, 0) + n
        # One lock per metric and batch, not per delivery.
        if delivered:
            m.delivered.inc(delivered, self.label, "delivered")
        if duplicates:
            m.delivered.inc(duplicates, self.label, "duplicate")
        if latencies:
            m.latency.observe_many(latencies, self.label)
        if retried:
            m.retries.inc(1, self.label)
        if delivered or duplicates:
            self._note_reach(True)
        elif retried:
            self._reached = False if self._reached is not None else None
        return results

    def _note_error(self, error: BaseException, now_ms: int) -> None:
        code = getattr(error, "code", None)
        text = redact_text(f"{type(error).__name__}: {error}")
        self.last_error = (text[:500], code if isinstance(code, int) else None, now_ms)

    def retryable(self, exc: BaseException) -> bool:
        return self.inner.retryable(exc)

    def healthy(self) -> bool:
        return self.inner.healthy()

    def close(self) -> None:
        self.inner.close()
