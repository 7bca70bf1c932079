"""Message annotations and the summaries Ably keeps of them (RSAN1-RSAN3, RTAN1-RTAN4, TAN2, TM2u).

An annotation names a published message by its ``serial`` (``messageSerial``)
and has a ``type`` of the form ``namespace:method.v1``; the method decides how
the annotations of that type are folded into the message's summary (TM7):

* ``total.v1``: how many, unattributed (``{"total": n}``); anyone may publish;
* ``flag.v1``: which clients, once each (``{"total", "clientIds"}``);
* ``distinct.v1``: per ``name``, which clients, once each per name;
* ``unique.v1``: per ``name``, which clients, each client under one name at a time;
* ``multiple.v1``: per ``name``, each client's summed ``count`` (default 1),
  with ``totalUnidentified`` for clients without a clientId.

A delete (action 1) takes back what the same client (and name) contributed.
Every annotation gets a fresh channel serial (so it sorts after the message)
and reaches attachments with the ``annotation_subscribe`` mode as an
ANNOTATION ProtocolMessage; the new summary then reaches subscribers as a
MESSAGE whose message has action ``message.summary`` (4), the annotated
message's serial and ``annotations.summary``, and is kept on the stored
message, so history and ``GET .../messages/<serial>`` carry it. Annotations
need a channel with the ``mutableMessages`` rule (93002), the
``annotation-publish`` capability (40160) and, on realtime, the
``annotation_publish`` mode (40165).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import codec, mutations
from ably_bridge.emulator.actions import ANNOTATION, MESSAGE
from ably_bridge.emulator.apps import random_id
from ably_bridge.emulator.errors import error

if TYPE_CHECKING:
    from ably_bridge.emulator.channels import Channel
    from ably_bridge.emulator.connections import Connection
    from ably_bridge.emulator.state import Credentials, EmulatorState

CREATE, DELETE = 0, 1  # TAN2b
_ACTION_NAMES = {"annotation.create": CREATE, "annotation.delete": DELETE}
SUMMARY = 4  # TM5 MESSAGE_SUMMARY
METHODS = frozenset({"total.v1", "flag.v1", "distinct.v1", "unique.v1", "multiple.v1"})
_TYPE = re.compile(r"[^:]+:([a-z]+\.v[0-9]+)")
_FIELDS = ("id", "clientId", "name", "count", "data", "encoding", "extras", "type")


def method_of(annotation_type: Any) -> str:
    """The summary method of ``annotation_type`` (40003 when it is not one Ably knows)."""
    found = _TYPE.fullmatch(annotation_type) if isinstance(annotation_type, str) else None
    if found is None or found.group(1) not in METHODS:
        raise error(40003, f"invalid annotation type {str(annotation_type)[:60]!r}")
    return found.group(1)


def _action(item: dict[str, Any]) -> int:
    action = item.get("action", CREATE)
    if isinstance(action, str):
        action = _ACTION_NAMES.get(action, -1)
    if action not in (CREATE, DELETE) or isinstance(action, bool):
        raise error(40003, "invalid annotation action")
    return int(action)


def _checked(
    state: EmulatorState, creds: Credentials, identity: str | None, item: Any, serial: Any
) -> dict[str, Any]:
    """One annotation as sent, validated; the server-set fields are added later."""
    if not isinstance(item, dict):
        raise error(40001, "an annotation must be an object")
    codec.check_fields(item)
    given = item.get("messageSerial")
    serial = given if serial is None else serial
    if not isinstance(serial, str) or not serial or (given not in (None, serial)):
        raise error(40003, "an annotation names its message by messageSerial")
    method = method_of(item.get("type"))
    client_id = state.effective_client_id(identity, creds.basic, item.get("clientId"))
    if client_id is None and method not in ("total.v1", "multiple.v1"):
        raise error(40003, f"annotations of type {item['type']!r} need an identified client")
    count = item.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        raise error(40003, "annotation count must be an integer")
    if not isinstance(item.get("name", ""), str | None):
        raise error(40003, "annotation name must be a string")
    out = {k: item[k] for k in _FIELDS if item.get(k) is not None}
    out.update(action=_action(item), messageSerial=serial)
    if client_id is not None:
        out["clientId"] = client_id
    return out


def publish(
    state: EmulatorState,
    creds: Credentials,
    channel_name: Any,
    items: list[Any],
    *,
    conn: Connection | None,
    identity: str | None,
    msg_serial: int = -1,
    message_serial: str | None = None,
) -> None:
    """Store ``items``, announce them and the changed summaries (RSAN1, RTAN1)."""
    parsed = state.resolve_channel(creds, channel_name, "annotation-publish")
    if not mutations.mutable_allowed(creds.app, parsed.base):
        raise error(93002, "message annotations are not enabled on this channel", 400)
    checked = [_checked(state, creds, identity, i, message_serial) for i in items]
    if not checked:
        raise error(40003, "no annotations to publish")
    if sum(codec.data_size(a) for a in checked) > state.config.max_message_size:
        raise error(40009, "annotations exceed maxMessageSize")
    channel = creds.app.channel(parsed.base)
    for annotation in checked:
        mutations.versions_of(channel, annotation["messageSerial"])  # 40400 when unknown
    now = state.now_ms()
    base = f"{conn.id}:{msg_serial}" if conn is not None and msg_serial >= 0 else random_id(12)
    fresh: list[dict[str, Any]] = []
    for index, annotation in enumerate(checked):
        annotation.setdefault("id", f"{base}:{index}")
        kept = channel.annotations.setdefault(annotation["messageSerial"], [])
        if any(a["id"] == annotation["id"] for a in kept):
            continue  # RSAN1c4: an idempotent re-publish
        annotation.update(serial=channel.next_serial(), timestamp=now)
        if conn is not None:
            annotation["connectionId"] = conn.id
        kept.append(annotation)
        fresh.append(annotation)
    if not fresh:
        return
    channel.last_activity_ms = now
    state.emit(channel, ANNOTATION, fresh, conn.id if conn is not None else None)
    for serial in dict.fromkeys(a["messageSerial"] for a in fresh):
        _announce_summary(state, channel, serial)


def _announce_summary(state: EmulatorState, channel: Channel, serial: str) -> None:
    summary = summarise(channel.annotations.get(serial, []))
    latest = mutations.versions_of(channel, serial)[-1]
    for stored in (latest, *(m for m in channel.history if m.get("serial") == serial)):
        stored["annotations"] = {"summary": summary}
    channel.next_serial()  # the summary is a channel event of its own (RTL15b)
    event: dict[str, Any] = {
        "action": SUMMARY,
        "serial": serial,
        "annotations": {"summary": summary},
    }
    for key in ("id", "timestamp"):
        if latest.get(key) is not None:
            event[key] = latest[key]
    state.emit(channel, MESSAGE, [event], None)


def summarise(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one message's annotations, in the order they came (TM2u, TM7)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for annotation in annotations:
        by_type.setdefault(annotation["type"], []).append(annotation)
    summary: dict[str, Any] = {}
    for annotation_type, items in by_type.items():
        fold = _FOLDS[method_of(annotation_type)]
        entry = fold(items)
        if entry:
            summary[annotation_type] = entry
    return summary


def _client_list(clients: dict[str, None]) -> dict[str, Any]:
    return {"total": len(clients), "clientIds": list(clients), "clipped": False}


def _total(items: list[dict[str, Any]]) -> dict[str, Any]:
    total = 0
    for a in items:
        total = total + 1 if a["action"] == CREATE else max(0, total - 1)
    return {"total": total}


def _flag(items: list[dict[str, Any]]) -> dict[str, Any]:
    clients: dict[str, None] = {}
    for a in items:
        if a["action"] == CREATE:
            clients[a["clientId"]] = None
        else:
            clients.pop(a["clientId"], None)
    return _client_list(clients) if clients else {}


def _by_name(items: list[dict[str, Any]], unique: bool) -> dict[str, Any]:
    names: dict[str, dict[str, None]] = {}
    for a in items:
        name, client = a.get("name", ""), a["clientId"]
        if unique or a["action"] == DELETE:
            targets = names.values() if unique else [names.get(name, {})]
            for clients in targets:
                clients.pop(client, None)
        if a["action"] == CREATE:
            names.setdefault(name, {})[client] = None
    return {name: _client_list(c) for name, c in names.items() if c}


def _distinct(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _by_name(items, unique=False)


def _unique(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _by_name(items, unique=True)


def _multiple(items: list[dict[str, Any]]) -> dict[str, Any]:
    names: dict[str, tuple[dict[str, int], list[int]]] = {}
    for a in items:
        counts, unidentified = names.setdefault(a.get("name", ""), ({}, [0]))
        client = a.get("clientId")
        if a["action"] == DELETE:
            if client is not None:
                counts.pop(client, None)
        elif client is None:
            unidentified[0] += a.get("count", 1)
        else:
            counts[client] = counts.get(client, 0) + a.get("count", 1)
    out: dict[str, Any] = {}
    for name, (counts, unidentified) in names.items():
        if counts or unidentified[0]:
            out[name] = {
                "total": sum(counts.values()) + unidentified[0],
                "clientIds": dict(counts),
                "totalUnidentified": unidentified[0],
                "totalClientIds": len(counts),
                "clipped": False,
            }
    return out


_FOLDS = {
    "total.v1": _total,
    "flag.v1": _flag,
    "distinct.v1": _distinct,
    "unique.v1": _unique,
    "multiple.v1": _multiple,
}


def page(
    channel: Channel | None, serial: str, limit: int, start: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a message's annotations, oldest first, and the next cursor (RSAN3)."""
    if channel is None:
        raise error(40400, f"no message with serial {serial[:40]!r}", 404)
    mutations.versions_of(channel, serial)  # 40400 when unknown
    kept = channel.annotations.get(serial, [])
    end = start + limit
    return kept[start:end], (str(end) if end < len(kept) else None)
