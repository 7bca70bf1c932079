"""The sink contract, the registry of sinks by URL scheme, and the in-memory sink.

This module owns:

* :class:`Delivery` (one envelope for one target) and :class:`Result` (what
  became of it: delivered, duplicate, retry later, or rejected for good);
* the :class:`Sink` protocol - synchronous ``deliver(batch)`` returning one
  result per delivery in order, ``retryable(exc)`` (each sink declares which
  of its errors are worth retrying, kombu style), ``healthy()`` and ``close()``;
* the registry: sinks are looked up by target kind (``redis_stream`` or
  ``celery``) and URL scheme, with factories named as ``"module:attr"`` strings
  so that Celery is only imported when a Celery target exists;
* :class:`MemorySink`, a shipped fake for sans-I/O tests (ours and users'):
  it records what it got, de-duplicates like the real sinks, and can be told
  to fail.

A sink never raises out of ``deliver`` for an event-level problem; whole-batch
problems (the sink is down) come back as ``RETRY`` results for every delivery.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from ably_bridge.bridge.config import CeleryTarget, StreamTarget, Target
from ably_bridge.bridge.dedup import celery_task_id, stream_dedup_field
from ably_bridge.bridge.fencing import Fence, Fencing
from ably_bridge.clock import Clock, SystemClock
from ably_bridge.envelope import Envelope

__all__ = [
    "Delivery",
    "MemorySink",
    "Outcome",
    "Result",
    "Sink",
    "SinkError",
    "SinkKind",
    "SinkOptions",
    "create_sink",
    "register_sink",
    "registered_schemes",
    "render_key",
    "sink_label",
]

logger = logging.getLogger(__name__)

SinkKind = Literal["redis_stream", "celery"]


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"  # already delivered earlier: counts as confirmed
    RETRY = "retry"  # transient: try again later
    REJECTED = "rejected"  # permanent for this event: dead-letter it
    # Refused by a shard fence: this replica no longer owns the channel. Not an
    # error of the event: the new owner delivers it from the checkpoint.
    FENCED = "fenced"


@dataclass(slots=True)
class Delivery:
    """One envelope for one target of its route (never changed once made).

    ``fence``: with shard leases, the channel's shard token when the event was
    accepted; a sink that can checks it at write time (see :mod:`..fencing`).
    """

    envelope: Envelope
    target: Target
    fence: Fence | None = None

    @property
    def route_id(self) -> str:
        return self.envelope.rule_id


@dataclass(slots=True)
class Result:
    """What happened to one :class:`Delivery`; ``detail`` is a stream id or task id.

    Like :class:`Delivery`, one is made per event and per target, so neither is a
    frozen dataclass (whose ``__init__`` costs three times as much); treat both
    as immutable.
    """

    outcome: Outcome
    detail: str = ""
    error: BaseException | None = None

    @property
    def confirmed(self) -> bool:
        return self.outcome is Outcome.DELIVERED or self.outcome is Outcome.DUPLICATE


class SinkError(Exception):
    """A sink-level failure with its retryability decided by the sink."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Sink(Protocol):
    """Where deliveries go. Implementations must be safe to call from one thread at a time
    per instance, and should batch/pipeline a whole ``deliver`` call."""

    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        """Deliver ``batch``; one :class:`Result` per delivery, in order. Never raises."""
        ...

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by this sink's client) is transient."""
        ...

    def healthy(self) -> bool:
        """A cheap liveness probe (e.g. PING); never raises."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


def sink_label(sink: object) -> str:
    """A sink as logs and the status name it: its kind and redacted URL
    (``redis:redis://host:6379/0``), or its class name when it has no label."""
    return str(getattr(sink, "label", None) or type(sink).__name__)


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """What every sink may need besides its URL."""

    key_prefix: str = "ably-bridge"
    dedup_ttl: float = 3600.0
    socket_timeout: float = 5.0
    clock: Clock = field(default_factory=SystemClock)
    fencing: Fencing | None = None  # shard leases on: sinks that can, check Delivery.fence
    wait_replicas: int = 0  # Redis sinks: delivered only once this many replicas have it
    wait_timeout: float = 1.0  # seconds the WAIT for them may take before the batch is retried


SinkFactory = Callable[[str, SinkOptions], Sink]

# kind -> scheme -> "module:attr" or a factory.
_REGISTRY: dict[str, dict[str, str | SinkFactory]] = {
    "redis_stream": {
        "redis": "ably_bridge.bridge.sinks.redis_streams:RedisStreamSink",
        "rediss": "ably_bridge.bridge.sinks.redis_streams:RedisStreamSink",
        "unix": "ably_bridge.bridge.sinks.redis_streams:RedisStreamSink",
        "redis+sentinel": "ably_bridge.bridge.sinks.redis_streams:RedisStreamSink",
        "redis+cluster": "ably_bridge.bridge.sinks.redis_cluster:ClusterStreamSink",
        "rediss+cluster": "ably_bridge.bridge.sinks.redis_cluster:ClusterStreamSink",
        "memory": "ably_bridge.bridge.sinks.base:MemorySink",
    },
    "celery": {
        "amqp": "ably_bridge.bridge.sinks.celery:CelerySink",
        "amqps": "ably_bridge.bridge.sinks.celery:CelerySink",
        "pyamqp": "ably_bridge.bridge.sinks.celery:CelerySink",
        "redis": "ably_bridge.bridge.sinks.celery:CelerySink",
        "rediss": "ably_bridge.bridge.sinks.celery:CelerySink",
        "memory": "ably_bridge.bridge.sinks.base:MemorySink",
    },
}


def register_sink(kind: SinkKind, scheme: str, factory: str | SinkFactory) -> None:
    """Register (or replace) the sink for ``kind`` targets whose URL uses ``scheme``."""
    _REGISTRY.setdefault(kind, {})[scheme.lower()] = factory


def registered_schemes(kind: SinkKind) -> list[str]:
    return sorted(_REGISTRY.get(kind, {}))


def create_sink(kind: SinkKind, url: str, options: SinkOptions | None = None) -> Sink:
    """Build the sink registered for ``kind`` and the scheme of ``url``.

    Raises ``ValueError`` for an unknown kind or scheme (never echoing the URL,
    which may hold a password).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    factory = _REGISTRY.get(kind, {}).get(scheme)
    if factory is None:
        raise ValueError(f"no {kind} sink registered for URL scheme {scheme!r}")
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    sink: Sink = factory(url, options or SinkOptions())
    return sink


class _KeyRenderer:
    """Renders stream key templates, caching per (template, route, channel, source)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str, str, str], str] = {}

    def __call__(self, template: str, envelope: Envelope) -> str:
        k = (template, envelope.rule_id, envelope.channel, envelope.source, envelope.app_id)
        hit = self._cache.get(k)
        if hit is None:
            hit = template.format(
                channel=envelope.channel,
                route=envelope.rule_id,
                app=envelope.app_id,
                source=envelope.short_source,
            )
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[k] = hit
        return hit


render_key = _KeyRenderer()


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :class:`MemorySink` keeps per accepted delivery."""

    destination: str  # rendered stream key or task name
    envelope: Envelope
    target: Target
    detail: str


class MemorySink:
    """An in-memory sink for tests: records deliveries, de-duplicates, can fail on demand.

    ``fail_with(exc, retryable=True)`` makes every following ``deliver`` return
    RETRY (or REJECTED) with ``exc`` until ``recover()``; ``reject(event_id)``
    rejects one event for good.
    """

    def __init__(self, url: str = "memory://", options: SinkOptions | None = None) -> None:
        self.url = url
        self.options = options or SinkOptions()
        self.records: list[Recorded] = []
        self.calls = 0
        self._seen: set[tuple[str, str]] = set()
        self._failure: tuple[BaseException, bool] | None = None
        self._rejects: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False

    # -- test controls -----------------------------------------------------
    def fail_with(self, exc: BaseException, *, retryable: bool = True) -> None:
        self._failure = (exc, retryable)

    def recover(self) -> None:
        self._failure = None

    def reject(self, event_id: str) -> None:
        self._rejects.add(event_id)

    def destinations(self) -> dict[str, list[Envelope]]:
        out: dict[str, list[Envelope]] = {}
        for rec in self.records:
            out.setdefault(rec.destination, []).append(rec.envelope)
        return out

    # -- Sink ----------------------------------------------------------------
    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        with self._lock:
            self.calls += 1
            failure = self._failure
            if failure is not None:
                exc, retry = failure
                outcome = Outcome.RETRY if retry else Outcome.REJECTED
                return [Result(outcome, error=exc) for _ in batch]
            results: list[Result] = []
            for d in batch:
                env = d.envelope
                if env.event_id in self._rejects:
                    results.append(
                        Result(Outcome.REJECTED, error=SinkError("rejected", retryable=False))
                    )
                    continue
                dest, detail, mark = _memory_identity(d)
                if (dest, mark) in self._seen:
                    results.append(Result(Outcome.DUPLICATE, detail))
                    continue
                self._seen.add((dest, mark))
                self.records.append(Recorded(dest, env, d.target, detail))
                results.append(Result(Outcome.DELIVERED, detail))
            return results

    def retryable(self, exc: BaseException) -> bool:
        return bool(getattr(exc, "retryable", True))

    def healthy(self) -> bool:
        return self._failure is None

    def close(self) -> None:
        self.closed = True


def _memory_identity(d: Delivery) -> tuple[str, str, str]:
    env = d.envelope
    target = d.target
    if isinstance(target, CeleryTarget):
        task_id = celery_task_id(env.rule_id, target.task, env.dedup_key)
        return target.task, task_id, task_id
    assert isinstance(target, StreamTarget)
    key = render_key(target.key, env)
    return key, env.event_id, stream_dedup_field(env.rule_id, env.dedup_key)
