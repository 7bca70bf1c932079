"""Consuming what the bridge delivers: envelope decoding and the de-duplicating task decorator.

This module owns :class:`BridgedEvent` (one message, presence event or channel
lifecycle event out of an Ably Integrations envelope), :func:`decode_envelope`,
:func:`envelope_from_fields` (both Redis Stream layouts the bridge writes: one
``envelope`` field of JSON, or the flat fields of ``Envelope.flat_fields``) and
:func:`envelope_task`, a decorator that turns ``handler(event)`` into a Celery
task taking the envelope dict.

De-duplication reuses the bridge's key scheme (:mod:`ably_bridge.bridge.dedup`):
an event's key is ``celery_task_id(ruleId, task name, dedup_key)`` - exactly the
task id the bridge's Celery sink gives that event - guarded by
:class:`~ably_bridge.bridge.dedup.WorkerGuard`: a done mark
``<prefix>:task:done:<key>`` (``SET ... EX done_ttl``) and an in-progress lock
``<prefix>:task:lock:<key>`` (``SET NX PX lock_ttl``). So an event is handled
once whether the bridge re-sent it (same task id) or someone enqueued the same
envelope again (a new task id).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ably_bridge.bridge.dedup import WorkerGuard, celery_task_id
from ably_bridge.encoding.payload import decode_data
from ably_bridge.errors import AblyException, ErrorCode
from workers.settings import WorkerSettings

__all__ = [
    "SOURCE_LIFECYCLE",
    "SOURCE_MESSAGE",
    "SOURCE_PRESENCE",
    "BridgedEvent",
    "decode_envelope",
    "envelope_from_fields",
    "envelope_task",
    "event_key",
]

log = logging.getLogger(__name__)

SOURCE_MESSAGE = "channel.message"
SOURCE_PRESENCE = "channel.presence"
SOURCE_LIFECYCLE = "channel.lifecycle"
_ENVELOPE_KEYS = frozenset({"source", "appId", "channel", "site", "ruleId", "timestamp"})
_INT_FIELDS = frozenset({"timestamp", "action"})
_JSON_FIELDS = frozenset({"extras"})


@dataclass(frozen=True, slots=True)
class BridgedEvent:
    """One event of an envelope, with its ``data`` decoded as far as possible."""

    source: str
    app_id: str
    channel: str
    site: str
    rule_id: str
    timestamp: int
    event_id: str
    id: str | None = None
    name: str | None = None
    data: Any = None
    encoding: str | None = None
    client_id: str | None = None
    connection_id: str | None = None
    extras: dict[str, Any] | None = None
    action: int | None = None
    serial: str | None = None
    envelope: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedup_key(self) -> str:
        """The bridge's source-qualified id: ``m:<id>``, ``p:<id>`` or ``l:<id>``."""
        return f"{self.source[8:9]}:{self.event_id}"

    @property
    def short_source(self) -> str:
        """``message``, ``presence`` or ``lifecycle``."""
        return self.source.removeprefix("channel.")


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def envelope_from_fields(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """The envelope dict of a Redis Stream entry, in either layout the bridge writes."""
    flat = {_text(k): _text(v) for k, v in fields.items()}
    if "envelope" in flat:
        parsed = json.loads(flat["envelope"])
        if not isinstance(parsed, dict):
            raise AblyException("envelope field is not a JSON object", ErrorCode.BAD_REQUEST, 400)
        return parsed
    source = flat.get("source", SOURCE_MESSAGE)
    envelope: dict[str, Any] = {k: flat[k] for k in _ENVELOPE_KEYS if k in flat}
    envelope["timestamp"] = int(flat.get("timestamp") or 0)
    if source == SOURCE_LIFECYCLE:
        envelope["name"] = flat.get("name")
        envelope["data"] = json.loads(flat["data"]) if flat.get("data") else {}
        return envelope
    item: dict[str, Any] = {}
    for key, value in flat.items():
        if key in _ENVELOPE_KEYS:
            continue
        if key in _INT_FIELDS:
            item[key] = int(value)
        elif key in _JSON_FIELDS:
            item[key] = json.loads(value)
        else:
            item[key] = value
    item.setdefault("timestamp", envelope["timestamp"])
    encoding = item.get("encoding")
    if isinstance(encoding, str) and encoding.split("/")[-1] == "json" and "data" in item:
        # flat_fields wrote structured data as JSON text and appended "json": undo that step.
        item["data"] = json.loads(item["data"])
        item["encoding"] = "/".join(encoding.split("/")[:-1]) or None
        if item["encoding"] is None:
            del item["encoding"]
    envelope["messages" if source == SOURCE_MESSAGE else "presence"] = [item]
    return envelope


def _event(envelope: dict[str, Any], source: str, item: Mapping[str, Any]) -> BridgedEvent:
    data, encoding = item.get("data"), item.get("encoding") or None
    if encoding:
        result = decode_data(data, encoding, None)
        if result.error is None or result.encoding != encoding:
            data, encoding = result.data, result.encoding
    channel = str(envelope.get("channel") or "")
    timestamp = int(item.get("timestamp") or envelope.get("timestamp") or 0)
    item_id = item.get("id")
    event_id = str(item_id) if item_id else f"{channel}:{item.get('name')}:{timestamp}"
    extras = item.get("extras")
    action = item.get("action")
    return BridgedEvent(
        source=source,
        app_id=str(envelope.get("appId") or ""),
        channel=channel,
        site=str(envelope.get("site") or ""),
        rule_id=str(envelope.get("ruleId") or ""),
        timestamp=timestamp,
        event_id=event_id,
        id=str(item_id) if item_id else None,
        name=item.get("name"),
        data=data,
        encoding=encoding,
        client_id=item.get("clientId"),
        connection_id=item.get("connectionId"),
        extras=dict(extras) if isinstance(extras, Mapping) else None,
        action=int(action) if action is not None else None,
        serial=item.get("serial"),
        envelope=envelope,
    )


def decode_envelope(envelope: Mapping[str, Any] | str | bytes) -> list[BridgedEvent]:
    """The events of an Integrations envelope (a dict, or its JSON text)."""
    parsed: Any = json.loads(envelope) if isinstance(envelope, str | bytes) else dict(envelope)
    if not isinstance(parsed, dict):
        raise AblyException("an envelope must be a JSON object", ErrorCode.BAD_REQUEST, 400)
    raw: dict[str, Any] = parsed
    source = str(raw.get("source") or "")
    if source == SOURCE_LIFECYCLE:
        body = raw.get("data")
        channel = str(raw.get("channel") or "")
        timestamp = int(raw.get("timestamp") or 0)
        name = raw.get("name")
        return [
            BridgedEvent(
                source=source,
                app_id=str(raw.get("appId") or ""),
                channel=channel,
                site=str(raw.get("site") or ""),
                rule_id=str(raw.get("ruleId") or ""),
                timestamp=timestamp,
                event_id=f"{channel}:{name}:{timestamp}",
                name=str(name) if name is not None else None,
                data=dict(body) if isinstance(body, Mapping) else {},
                envelope=raw,
            )
        ]
    key = "presence" if source == SOURCE_PRESENCE else "messages"
    items = raw.get(key)
    if source not in (SOURCE_MESSAGE, SOURCE_PRESENCE) or not isinstance(items, list):
        raise AblyException(f"unknown envelope source {source!r}", ErrorCode.BAD_REQUEST, 400)
    return [_event(raw, source, item) for item in items if isinstance(item, Mapping)]


def event_key(task_name: str, event: BridgedEvent) -> str:
    """The de-duplication key of ``event`` for ``task_name`` (the bridge's task id)."""
    return celery_task_id(event.rule_id, task_name, event.dedup_key)


class _GuardHolder:
    """A WorkerGuard made lazily in the process that uses it (after fork)."""

    def __init__(
        self,
        client: redis.Redis | None,
        url: str,
        prefix: str,
        done_ttl: float,
        lock_ttl: float,
    ) -> None:
        self._client = client
        self._url = url
        self._prefix = prefix
        self._done_ttl = done_ttl
        self._lock_ttl = lock_ttl
        self._guard: WorkerGuard | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerGuard:
        with self._lock:
            if self._guard is None:
                client = self._client or redis.Redis.from_url(
                    self._url, socket_timeout=10, socket_connect_timeout=10
                )
                self._guard = WorkerGuard(
                    client, prefix=self._prefix, done_ttl=self._done_ttl, lock_ttl=self._lock_ttl
                )
            return self._guard


Handler = Callable[[BridgedEvent], Any]


def envelope_task(
    app: Any,
    *,
    name: str | None = None,
    redis_client: redis.Redis | None = None,
    settings: WorkerSettings | None = None,
    lock_ttl: float = 300.0,
    busy_retry_delay: float = 5.0,
    **task_options: Any,
) -> Callable[[Handler], Any]:
    """Decorate ``handler(event)`` into a Celery task that takes a bridged envelope.

    The task decodes the envelope, calls ``handler`` once per event and skips
    events already handled (by this task name); an event being handled right
    now by another worker makes the task retry in ``busy_retry_delay``. The
    task returns ``{"handled": n, "skipped": m}``. ``task_options`` go to
    ``app.task`` (``acks_late`` defaults to True).
    """
    settings = settings or WorkerSettings.from_env()
    holder = _GuardHolder(
        redis_client, settings.dedup_url(), settings.dedup_prefix, settings.dedup_ttl, lock_ttl
    )
    task_options.setdefault("acks_late", True)
    task_options.setdefault("reject_on_worker_lost", True)

    def decorate(handler: Handler) -> Any:
        task_name = name or f"{handler.__module__}.{handler.__qualname__}"

        @app.task(name=task_name, bind=True, shared=False, **task_options)  # type: ignore[untyped-decorator]
        @functools.wraps(handler)
        def run(self: Any, envelope: dict[str, Any]) -> dict[str, int]:
            guard = holder.get()
            handled = skipped = 0
            for event in decode_envelope(envelope):
                key = event_key(task_name, event)
                state = guard.claim(key)
                if state == WorkerGuard.DONE:
                    skipped += 1
                    continue
                if state == WorkerGuard.BUSY:
                    raise self.retry(countdown=busy_retry_delay)
                try:
                    handler(event)
                except BaseException:
                    guard.release(key)
                    raise
                guard.complete(key)
                handled += 1
            if skipped:
                log.info("%s: skipped %d event(s) already handled", task_name, skipped)
            return {"handled": handled, "skipped": skipped}

        return run

    return decorate
