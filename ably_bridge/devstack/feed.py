"""Your events, end to end: the dev console's lines for each event not sent by the demo publisher.

This module owns :class:`Feed`. Each :meth:`Feed.poll` reads the run's Redis
Stream from where the last poll stopped, decodes the bridge's envelopes, and
keeps the events that are not the demo publisher's (its client id is
:data:`~ably_bridge.devstack.layout.PUBLISHER_CLIENT_ID`). For each it reports
two :class:`Sighting` s, in order: ``stream`` when the event's entry is in the
stream, and ``handled`` when the Celery task recorded it (with what the
user's ``--handler`` printed, returned or raised). :func:`format_sighting`
turns one into the console's text lines.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.devstack.layout import PUBLISHER_CLIENT_ID, DevLayout
from workers.consumers import BridgedEvent, decode_envelope, envelope_from_fields

__all__ = ["Feed", "Sighting", "format_sighting"]

log = logging.getLogger(__name__)
_REDIS_ERRORS = (redis.RedisError, RedisClusterException)  # a cluster may raise either

MAX_DATA = 200
_PRESENCE_ACTIONS = {0: "absent", 1: "present", 2: "enter", 3: "leave", 4: "update"}


@dataclass(frozen=True)
class Sighting:
    """One event seen at one stage (``stream`` or ``handled``)."""

    stage: str
    source: str
    channel: str
    id: str | None
    name: str | None
    data: str
    client_id: str | None
    stream: str
    entry_id: str
    task: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": "yours", **asdict(self)}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _short(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False) if not isinstance(data, str) else repr(data)
    return text if len(text) <= MAX_DATA else text[: MAX_DATA - 3] + "..."


def format_sighting(s: Sighting) -> list[str]:
    """The console's lines for one sighting."""
    if s.stage == "stream":
        what = s.name if s.source == "message" else f"presence {s.name}"
        who = f" from {s.client_id}" if s.client_id else ""
        return [
            f"  > {s.channel}: {what} {s.data}{who} (id {s.id}) -> stream {s.stream} {s.entry_id}"
        ]
    result = s.result
    lines = [f"    handled by task {s.task} (id {s.id})"]
    handler = result.get("handler")
    if handler and handler != s.task:
        if result.get("error"):
            lines[0] += f"; your handler {handler} raised {result['error']}"
        else:
            returned = result.get("returned")
            lines[0] += f"; your handler {handler} ran" + (
                f" and returned {returned}" if returned is not None else ""
            )
        lines.extend(f"    | {line}" for line in str(result.get("output", "")).splitlines())
    return lines


class Feed:
    """Follows the run's stream and the task's results for the events that are yours."""

    def __init__(self, layout: DevLayout, task: str, client: redis.Redis | None = None) -> None:
        self.layout = layout
        self.task = task
        self._redis = client or open_redis(  # a RedisCluster on a cluster: one key a read
            layout.data_url, socket_timeout=2, socket_connect_timeout=2
        )
        self._last = "0-0"
        self._waiting: dict[str, Sighting] = {}  # event id -> its stream sighting

    def close(self) -> None:
        self._redis.close()

    @staticmethod
    def is_yours(event: BridgedEvent) -> bool:
        return event.client_id != PUBLISHER_CLIENT_ID and event.source != "channel.lifecycle"

    def poll(self) -> list[Sighting]:
        """New sightings since the last poll (nothing when Redis cannot be read now)."""
        try:
            return self._read_stream() + self._read_results()
        except _REDIS_ERRORS as exc:
            log.debug("feed: Redis not readable now: %s", exc)
            return []

    def _read_stream(self) -> list[Sighting]:
        entries: Any = self._redis.xrange(self.layout.stream_key, min=f"({self._last}", count=500)
        seen: list[Sighting] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            self._last = entry_id
            try:
                events = decode_envelope(envelope_from_fields(fields or {}))
            except Exception as exc:  # not an envelope: not ours to judge here
                log.debug("feed: entry %s not decoded: %s", entry_id, exc)
                continue
            for event in events:
                if self.is_yours(event):
                    sighting = self._sighting(event, entry_id)
                    self._waiting[event.event_id] = sighting
                    seen.append(sighting)
        return seen

    def _sighting(self, event: BridgedEvent, entry_id: str) -> Sighting:
        presence = event.short_source == "presence"
        name = _PRESENCE_ACTIONS.get(event.action or 0, "?") if presence else event.name
        return Sighting(
            stage="stream",
            source=event.short_source,
            channel=event.channel,
            id=event.id,
            name=name,
            data=_short(event.data),
            client_id=event.client_id,
            stream=self.layout.stream_key,
            entry_id=entry_id,
        )

    def _read_results(self) -> list[Sighting]:
        if not self._waiting:
            return []
        ids = list(self._waiting)
        values: list[Any] = self._redis.hmget(self.layout.results_key, ids)
        handled: list[Sighting] = []
        for event_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            try:
                result = json.loads(value)
            except ValueError:
                result = {}
            stream = self._waiting.pop(event_id)
            handled.append(
                Sighting(
                    **{**asdict(stream), "stage": "handled", "task": self.task, "result": result}
                )
            )
        return handled
