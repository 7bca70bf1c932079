"""The live summary of the dev stack: what flowed where, as a text line or a JSON object.

This module owns :class:`Snapshot` (published by the demo publisher, received
by the bridge - live and backfilled, from its ``/metrics`` - entries in the Redis Stream, events the
Celery task handled, and how many of the published message ids reached the
stream and the task), :func:`format_text`, :func:`format_json`,
:func:`parse_metrics` (the Prometheus text, summed per metric) and
:class:`Collector`, which reads all of it without changing anything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import requests
from redis.exceptions import RedisClusterException

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.devstack.layout import DevLayout

__all__ = ["Collector", "Snapshot", "format_json", "format_text", "parse_metrics"]

log = logging.getLogger(__name__)
_REDIS_ERRORS = (redis.RedisError, RedisClusterException)  # a cluster may raise either

RECEIVED_METRIC = "ably_bridge_events_received_total"
BACKFILLED_METRIC = "ably_bridge_events_backfilled_total"
DELIVERED_METRIC = "ably_bridge_events_delivered_total"
DEAD_LETTER_METRIC = "ably_bridge_dead_letters_total"


@dataclass(frozen=True)
class Snapshot:
    """One summary line. ``None`` means "could not be read right now"."""

    elapsed: float
    published: int
    publish_errors: int
    presence_entered: bool
    bridge_received: int | None
    bridge_dead_letters: int | None
    stream_key: str
    stream_length: int | None
    celery_tasks: int | None
    celery_by_source: dict[str, int] = field(default_factory=dict)
    published_in_tasks: int | None = None
    published_in_stream: int | None = None
    final: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"event": "summary", **asdict(self)}


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def format_text(s: Snapshot) -> str:
    """One human line, e.g. ``[ 12s] published 11 (+presence) -> bridge 12 -> ...``."""
    label = "final" if s.final else f"{s.elapsed:4.0f}s"
    presence = " +presence" if s.presence_entered else ""
    errors = f" ({s.publish_errors} failed)" if s.publish_errors else ""
    tasks = _n(s.celery_tasks)
    if s.celery_by_source:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(s.celery_by_source.items()))
        tasks += f" ({parts})"
    line = (
        f"[{label}] published {s.published}{presence}{errors}"
        f" -> bridge received {_n(s.bridge_received)}"
        f" -> stream {s.stream_key} {_n(s.stream_length)}"
        f" -> celery tasks {tasks}"
    )
    if s.bridge_dead_letters:
        line += f" | dead letters {s.bridge_dead_letters}"
    if s.published_in_stream is not None:
        line += f"; published ids in the stream {s.published_in_stream}/{s.published}"
        line += f", handled {_n(s.published_in_tasks)}/{s.published}"
    elif s.published_in_tasks is not None:
        line += f"; published ids handled {s.published_in_tasks}/{s.published}"
    return line


def format_json(s: Snapshot) -> str:
    """One JSON object (a line of ``--json`` output)."""
    return json.dumps(s.as_dict(), sort_keys=False)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> ``{metric name: sum over its labels}``."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        try:
            number = float(value)
        except ValueError:
            continue
        totals[name] = totals.get(name, 0.0) + number
    return totals


class Collector:
    """Reads the numbers of a :class:`Snapshot` from the publisher, the bridge and Redis."""

    def __init__(
        self,
        layout: DevLayout,
        *,
        metrics_url: str,
        published: Callable[[], tuple[int, int, bool]] = lambda: (0, 0, False),
        published_ids: Callable[[], list[str]] = list,
        started: float | None = None,
    ) -> None:
        self.layout = layout
        self.metrics_url = metrics_url
        self._published = published
        self._published_ids = published_ids
        self.started = time.monotonic() if started is None else started
        # redis://, redis+sentinel:// or redis+cluster:// (a RedisCluster: every read
        # here names one key)
        self._redis = open_redis(layout.data_url, socket_timeout=2, socket_connect_timeout=2)

    def close(self) -> None:
        self._redis.close()

    def metrics(self) -> dict[str, float] | None:
        try:
            response = requests.get(self.metrics_url, timeout=2)
        except requests.RequestException:
            return None
        if response.status_code != 200:
            return None
        return parse_metrics(response.text)

    def _tasks(self) -> dict[str, int] | None:
        try:
            raw: dict[Any, Any] = self._redis.hgetall(self.layout.tasks_key)
        except _REDIS_ERRORS:
            return None
        return {_text(k): int(v) for k, v in raw.items()}

    def _stream_length(self) -> int | None:
        try:
            return int(self._redis.xlen(self.layout.stream_key))
        except _REDIS_ERRORS:
            return None

    def _ids_in_tasks(self, ids: list[str]) -> int | None:
        if not ids:
            return 0
        try:
            flags = self._redis.smismember(self.layout.handled_key, ids)
        except _REDIS_ERRORS:
            return None
        return sum(1 for flag in flags if flag)

    def _ids_in_stream(self, ids: list[str]) -> int | None:
        from workers.consumers import decode_envelope, envelope_from_fields

        wanted = set(ids)
        seen: set[str] = set()
        try:
            entries: Any = self._redis.xrange(self.layout.stream_key, count=100_000)
        except _REDIS_ERRORS:
            return None
        for _entry_id, fields in entries:
            try:
                events = decode_envelope(envelope_from_fields(fields or {}))
            except Exception as exc:  # a malformed entry is not ours to judge here
                log.debug("stream entry %r not decoded: %s", _entry_id, exc)
                continue
            seen.update(e.id for e in events if e.id is not None and e.id in wanted)
        return len(seen)

    def snapshot(self, *, final: bool = False) -> Snapshot:
        """Read everything now; ``final`` also matches the published ids against the stream."""
        published, errors, presence = self._published()
        metrics = self.metrics()
        tasks = self._tasks()
        ids = self._published_ids()
        return Snapshot(
            elapsed=round(time.monotonic() - self.started, 1),
            published=published,
            publish_errors=errors,
            presence_entered=presence,
            bridge_received=(
                int(metrics.get(RECEIVED_METRIC, 0) + metrics.get(BACKFILLED_METRIC, 0))
                if metrics is not None
                else None
            ),
            bridge_dead_letters=(
                int(metrics.get(DEAD_LETTER_METRIC, 0)) if metrics is not None else None
            ),
            stream_key=self.layout.stream_key,
            stream_length=self._stream_length(),
            celery_tasks=sum(tasks.values()) if tasks is not None else None,
            celery_by_source=tasks or {},
            published_in_tasks=self._ids_in_tasks(ids) if ids or final else None,
            published_in_stream=self._ids_in_stream(ids) if final else None,
            final=final,
        )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
