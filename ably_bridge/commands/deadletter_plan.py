"""What replaying one dead letter means: the event rebuilt, and where it goes.

This module owns :func:`plan_replay`, which turns one :class:`~.deadletter_store.DeadLetterEntry`
into a :class:`Plan` against the bridge configuration *as it is now* (the
operator fixed the cause, then replays). No I/O: it only reads the entry and
the configuration. The plan of an entry depends on its origin:

* ``bridge`` - the envelope is rebuilt from the stored JSON and goes to every
  target of its route, through the sinks' de-duplication (the Redis Streams
  dedup mark, the Celery task id), so a target that already has it answers
  "duplicate". An **undecodable** event was stored as the raw wire message: it
  is decoded again with the route's cipher key from the configuration (fixed
  since), in the route's data mode; if it still does not decode, the plan says
  why and the entry stays. An envelope larger than ``delivery.max_event_bytes``
  stays too (raise the limit first).
* ``worker`` - a Celery worker did not know the task name. If the route still
  has a Celery target of that name (the worker was fixed), the task is
  **published again as it was**: same name, same task id, same arguments (the
  broker had accepted it once, so a push-once mark of the sink would call it
  a duplicate; the worker's guard keyed on the task id and event runs it once).
  If the route's Celery targets now have other names (the configuration was
  fixed), the envelope goes to them through the Celery sink.
* ``consumer`` - a Redis Streams consumer gave up on an entry. The event was
  delivered; its handler failed. The entry is **moved** back to the end of its
  stream (``stream`` field) in one atomic step with its removal from the
  dead-letter stream, so it is handled again, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ably_bridge.bridge.config import BridgeConfig, CeleryTarget, Route, StreamTarget, Target
from ably_bridge.bridge.patterns import NameMatcher
from ably_bridge.bridge.secret import cipher_for
from ably_bridge.bridge.sinks import Delivery
from ably_bridge.bridge.sinks.base import render_key
from ably_bridge.commands.deadletter_store import DeadLetterEntry
from ably_bridge.envelope import (
    SOURCE_PRESENCE,
    Envelope,
    EnvelopeBuilder,
    UndecodableEvent,
    envelope_from_dict,
)

__all__ = [
    "ForcedTask",
    "Move",
    "Plan",
    "describe_target",
    "entry_json",
    "envelope_from_dict",
    "plan_replay",
]


@dataclass(frozen=True)
class ForcedTask:
    """A Celery task to publish again exactly as it was (same name, id and arguments)."""

    target: CeleryTarget
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Move:
    """A consumer's dead letter to put back on its stream, with these fields."""

    stream: str
    fields: dict[str, str]


@dataclass
class Plan:
    """What replaying ``entry`` does; ``error`` set: it cannot be replayed (it stays)."""

    entry: DeadLetterEntry
    deliveries: list[Delivery] = field(default_factory=list)
    forced: ForcedTask | None = None
    move: Move | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def targets(self) -> list[str]:
        """Where it goes, for people: ``redis_stream <key>``, ``celery <task>``..."""
        out = [describe_target(d.target, d.envelope) for d in self.deliveries]
        if self.forced is not None:
            out.append(f"celery {self.forced.target.task} (task id {self.forced.task_id})")
        if self.move is not None:
            out.append(f"stream {self.move.stream} (back to its consumers)")
        return out


def describe_target(target: Target, envelope: Envelope) -> str:
    if isinstance(target, CeleryTarget):
        return f"celery {target.task}"
    return f"redis_stream {render_key(target.key, envelope)}"


def _failed(entry: DeadLetterEntry, why: str) -> Plan:
    return Plan(entry, error=why)


def plan_replay(entry: DeadLetterEntry, config: BridgeConfig | None) -> Plan:
    """The plan of ``entry`` under ``config`` (None: only consumer entries can be planned)."""
    if entry.origin == "consumer":
        return _plan_consumer(entry, config)
    if config is None:
        return _failed(entry, "needs the bridge configuration (-c) to find the route's targets")
    if entry.truncated:
        return _failed(entry, "the stored event was truncated (over 1 MiB); it cannot be rebuilt")
    try:
        route = config.route(entry.route)
    except KeyError:
        return _failed(entry, f"route {entry.route!r} is not in the configuration")
    if entry.origin == "worker":
        return _plan_worker(entry, config, route)
    return _plan_bridge(entry, config, route)


# -- bridge ----------------------------------------------------------------------------
def _plan_bridge(entry: DeadLetterEntry, config: BridgeConfig, route: Route) -> Plan:
    notes: list[str] = []
    if entry.reason == "undecodable":
        built = _redecode(entry, config, route)
        if isinstance(built, str):
            return _failed(entry, built)
        envelope = built
        notes.append("decoded again with the route's current cipher key")
    else:
        event = entry.event
        if not isinstance(event, dict):
            return _failed(entry, "the stored event is not an envelope (not JSON)")
        try:
            envelope = envelope_from_dict(event, entry.get("event_id"))
        except ValueError as exc:
            return _failed(entry, f"the stored event is not an envelope: {exc}")
        if envelope.rule_id != route.id:
            return _failed(entry, f"the envelope's route {envelope.rule_id!r} is not {route.id!r}")
    limit = config.delivery.max_event_bytes
    size = envelope.size()
    if size > limit:
        return _failed(entry, f"the envelope is {size} bytes; delivery.max_event_bytes is {limit}")
    if not route.targets:
        return _failed(entry, f"route {route.id!r} has no targets")
    deliveries = [Delivery(envelope, target) for target in route.targets]
    return Plan(entry, deliveries=deliveries, notes=notes)


def _redecode(entry: DeadLetterEntry, config: BridgeConfig, route: Route) -> Envelope | str:
    """The envelope of an undecodable event, decoded now; or why it still is not."""
    from ably_bridge.protocol.models import Message, PresenceMessage

    raw = entry.event
    if not isinstance(raw, dict):
        return "the stored event is not the raw message (not JSON); it cannot be decoded again"
    builder = EnvelopeBuilder(config.app_id, config.site)
    cipher = _cipher(route, entry.channel)
    source = entry.get("source")
    now_ms = entry.time_ms
    try:
        if source == SOURCE_PRESENCE:
            presence = PresenceMessage.from_dict(raw)
            return builder.presence(
                entry.channel, presence, route.id, mode=route.data, cipher=cipher, now_ms=now_ms
            )
        message = Message.from_dict(raw)
        return builder.message(
            entry.channel, message, route.id, mode=route.data, cipher=cipher, now_ms=now_ms
        )
    except UndecodableEvent as exc:
        key = "with the route's cipher key" if cipher is not None else "(no cipher key applies)"
        return f"still undecodable {key}: error {exc.code}: {exc.message}"
    except (TypeError, ValueError) as exc:
        return f"the stored message is malformed: {type(exc).__name__}"


def _cipher(route: Route, channel: str) -> Any:
    """The route's cipher for ``channel`` (the first matching rule), or None."""
    for rule in route.ciphers:
        if NameMatcher(rule.channels).matches(channel):
            return cipher_for(rule.key)
    return None


# -- worker ----------------------------------------------------------------------------
def _plan_worker(entry: DeadLetterEntry, config: BridgeConfig, route: Route) -> Plan:
    event = entry.event
    assert isinstance(event, dict)
    task = str(event.get("task") or "")
    task_id = str(event.get("task_id") or "")
    body = event.get("body")
    if not (isinstance(body, list) and len(body) >= 2 and isinstance(body[0], list) and body[0]):
        return _failed(entry, "the task's message body is not a Celery task call")
    args, kwargs = body[0], body[1] if isinstance(body[1], dict) else {}
    celery_targets = [t for t in route.targets if isinstance(t, CeleryTarget)]
    if not celery_targets:
        return _failed(entry, f"route {route.id!r} has no Celery target now")
    same = [t for t in celery_targets if t.task == task]
    if same and task_id:
        note = f"task {task} published again with its own id"
        return Plan(
            entry, forced=ForcedTask(same[0], task_id, list(args), dict(kwargs)), notes=[note]
        )
    if not isinstance(args[0], dict):
        return _failed(entry, "the task's first argument is not a bridge envelope")
    try:
        envelope = envelope_from_dict(args[0])
    except ValueError as exc:
        return _failed(entry, f"the task's argument is not an envelope: {exc}")
    notes = [f"task {task!r} is not a target of route {route.id!r} any more"]
    deliveries = [Delivery(envelope, target) for target in celery_targets]
    return Plan(entry, deliveries=deliveries, notes=notes)


# -- consumer --------------------------------------------------------------------------
def _plan_consumer(entry: DeadLetterEntry, config: BridgeConfig | None) -> Plan:
    stream = entry.get("stream")
    event = entry.event
    if not stream:
        return _failed(entry, "the dead letter does not name its stream")
    if not isinstance(event, dict):
        return _failed(entry, "the stored entry is not JSON")
    if all(isinstance(v, str) for v in event.values()):
        # The consumer could not read the entry as an envelope: it stored the raw fields.
        return Plan(entry, move=Move(stream, dict(event)))
    try:
        envelope = envelope_from_dict(event, entry.get("event_id"))
    except ValueError as exc:
        return _failed(entry, f"the stored event is not an envelope: {exc}")
    layout = _layout_of(stream, envelope, config)
    fields = envelope.flat_fields() if layout == "flat" else {"envelope": envelope.to_json()}
    return Plan(entry, move=Move(stream, fields), notes=[f"{layout} layout"])


def _layout_of(stream: str, envelope: Envelope, config: BridgeConfig | None) -> str:
    """The layout of the bridge's target writing ``stream`` (envelope when none is found)."""
    if config is not None:
        for route in config.routes:
            for target in route.targets:
                if isinstance(target, StreamTarget) and render_key(target.key, envelope) == stream:
                    return target.layout
    return "envelope"


# -- envelopes -------------------------------------------------------------------------


def entry_json(plan: Plan) -> dict[str, Any]:
    """A plan as JSON for ``replay --json``."""
    out: dict[str, Any] = {
        "id": plan.entry.id,
        "origin": plan.entry.origin,
        "reason": plan.entry.reason,
        "route": plan.entry.route,
        "channel": plan.entry.channel,
        "targets": plan.targets(),
    }
    if plan.notes:
        out["notes"] = list(plan.notes)
    if plan.error is not None:
        out["error"] = plan.error
    return out
