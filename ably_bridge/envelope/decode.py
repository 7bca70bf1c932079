"""Decoding envelopes: what a consumer reads back from a Celery task or a stream entry.

This module owns :class:`BridgedEvent` (one message, presence event or channel
lifecycle event out of an Ably Integrations envelope), :func:`decode_envelope`,
:func:`envelope_from_fields` (both Redis Stream layouts the bridge writes: one
``envelope`` field of JSON, or the flat fields of ``Envelope.flat_fields``) and
:func:`envelope_from_dict`, which rebuilds the bridge's own :class:`Envelope`
from its JSON (the dead-letter replay re-sends it). It reads what
:mod:`ably_bridge.envelope.encode` writes; the names both agree on are in
:mod:`ably_bridge.envelope.shape`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.encoding.payload import decode_data
from ably_bridge.envelope.encode import Envelope
from ably_bridge.envelope.shape import (
    ENVELOPE_KEYS,
    FLAT_INT_FIELDS,
    FLAT_JSON_FIELDS,
    ITEMS_KEY,
    SOURCE_LIFECYCLE,
    SOURCE_MESSAGE,
    message_action_name,
    message_event_id,
)
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import (
    MessageAction,
    PresenceAction,
    message_action_from_wire,
    presence_action_from_wire,
)

__all__ = ["BridgedEvent", "decode_envelope", "envelope_from_dict", "envelope_from_fields"]


@dataclass(frozen=True, slots=True)
class BridgedEvent:
    """One event of an envelope, with its ``data`` decoded as far as possible.

    ``action`` is a :class:`~ably_bridge.protocol.actions.MessageAction` for a
    message (``MESSAGE_CREATE`` when the envelope has none, as envelopes from
    before protocol v4 do; an int when newer than this library), a
    :class:`~ably_bridge.protocol.actions.PresenceAction` for presence; both
    compare equal to the wire numbers. ``version`` (TM2s) is the message's
    latest version (for a create without one: ``serial`` and ``timestamp`` of
    the message, TM2s1/TM2s2); ``annotations`` (TM2u) as Ably sent them.
    """

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
    action: MessageAction | PresenceAction | int | None = None
    serial: str | None = None
    version: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    envelope: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedup_key(self) -> str:
        """The bridge's source-qualified id: ``m:<id>`` (``m:<id>@<version serial>`` for
        an update, delete or append; see :func:`~.shape.message_event_id`), ``p:<id>``
        or ``l:<id>``."""
        return f"{self.source[8:9]}:{self.event_id}"

    @property
    def action_name(self) -> str | None:
        """A message's action as ably-js names it (``message.create``, ``message.update``,
        ``message.delete``, ``message.append``, ``message.summary``); a presence
        action lower-cased (``enter``...); None for a lifecycle event."""
        if self.source == SOURCE_MESSAGE:
            return message_action_name(None if self.action is None else int(self.action))
        if isinstance(self.action, PresenceAction):
            return self.action.name.lower()
        return None if self.action is None else str(int(self.action))

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
    envelope: dict[str, Any] = {k: flat[k] for k in ENVELOPE_KEYS if k in flat}
    envelope["timestamp"] = int(flat.get("timestamp") or 0)
    if source == SOURCE_LIFECYCLE:
        envelope["name"] = flat.get("name")
        envelope["data"] = json.loads(flat["data"]) if flat.get("data") else {}
        return envelope
    item: dict[str, Any] = {}
    for key, value in flat.items():
        if key in ENVELOPE_KEYS:
            continue
        if key in FLAT_INT_FIELDS:
            item[key] = int(value)
        elif key in FLAT_JSON_FIELDS:
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
    envelope[ITEMS_KEY.get(source, "presence")] = [item]
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
    action: MessageAction | PresenceAction | int | None = None
    raw_action = item.get("action")
    if source == SOURCE_MESSAGE:
        action = message_action_from_wire(int(raw_action or 0))
        if item_id:
            event_id = message_event_id(event_id, item, int(envelope.get("timestamp") or 0))
    elif raw_action is not None:
        action = presence_action_from_wire(int(raw_action))
    version, annotations = item.get("version"), item.get("annotations")
    serial = item.get("serial")
    if source == SOURCE_MESSAGE and not isinstance(version, Mapping) and serial:
        version = {"serial": serial}  # TM2s1, TM2s2: a create's version is the message's
        if item.get("timestamp") is not None:
            version["timestamp"] = item["timestamp"]
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
        action=action,
        serial=serial,
        version=dict(version) if isinstance(version, Mapping) else None,
        annotations=dict(annotations) if isinstance(annotations, Mapping) else None,
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
    items = raw.get(ITEMS_KEY.get(source, ""))
    if source not in ITEMS_KEY or not isinstance(items, list):
        raise AblyException(f"unknown envelope source {source!r}", ErrorCode.BAD_REQUEST, 400)
    return [_event(raw, source, item) for item in items if isinstance(item, Mapping)]


def _position_serial(item: Mapping[str, Any], serial: str | None) -> str | None:
    """An update's, delete's or append's channel position is its ``version.serial``."""
    version = item.get("version")
    if item.get("action") in (None, 0, 4) or not isinstance(version, Mapping):
        return serial
    found = version.get("serial")
    return found if isinstance(found, str) and found else serial


def envelope_from_dict(raw: Mapping[str, Any], event_id: str = "") -> Envelope:
    """An :class:`Envelope` from its Integrations JSON (``ValueError`` if it is not one)."""
    source = raw.get("source")
    channel = raw.get("channel")
    rule_id = raw.get("ruleId")
    timestamp = raw.get("timestamp")
    if not isinstance(channel, str) or not isinstance(rule_id, str):
        raise ValueError("no channel or ruleId")
    if not isinstance(timestamp, int):
        raise ValueError("no timestamp")
    name: str | None = None
    serial: str | None = None
    if source in ITEMS_KEY:
        items = raw.get(ITEMS_KEY[str(source)])
        if not (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)):
            raise ValueError(f"{ITEMS_KEY[str(source)]} must hold exactly one event")
        item = dict(items[0])
        item_id = str(item.get("id") or "")
        serial = item.get("serial") if isinstance(item.get("serial"), str) else None
        if source == SOURCE_MESSAGE:
            name = item.get("name")
            if item_id and not event_id:
                event_id = message_event_id(item_id, item, timestamp)
            serial = _position_serial(item, serial)
        event_id = event_id or item_id
    elif source == SOURCE_LIFECYCLE:
        data, name = raw.get("data"), raw.get("name")
        if not isinstance(data, dict) or not isinstance(name, str):
            raise ValueError("a lifecycle envelope needs name and data")
        item = dict(data)
        event_id = event_id or f"{channel}:{name}:{timestamp}"
    else:
        raise ValueError(f"unknown source {source!r}")
    if not event_id:
        raise ValueError("the event has no id")
    return Envelope(
        source=str(source),
        app_id=str(raw.get("appId") or ""),
        channel=channel,
        site=str(raw.get("site") or ""),
        rule_id=rule_id,
        timestamp=timestamp,
        item=item,
        event_id=event_id,
        name=name,
        serial=serial,
    )
