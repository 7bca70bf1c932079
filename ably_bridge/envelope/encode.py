"""Encoding envelopes: one bridged event in the JSON shape of Ably's hosted integrations.

This module owns :class:`Envelope` and :class:`EnvelopeBuilder` (the bridge's
side; :mod:`ably_bridge.envelope.decode` reads what they write). An envelope
serialises (:meth:`Envelope.to_dict` / :meth:`Envelope.to_json`) to the
enveloped form that Ably Queues, Firehose and webhooks deliver, so a consumer
written for those reads it unchanged::

    {"source": "channel.message", "appId": "...", "channel": "...", "site": "...",
     "ruleId": "<route id>", "timestamp": 1700000000000,
     "messages": [{"id": ..., "name": ..., "clientId": ..., "connectionId": ...,
                   "timestamp": ..., "data": ..., "encoding": ..., "extras": ...}]}

``source`` is ``channel.message`` (``messages``), ``channel.presence``
(``presence``; ``action`` is the wire integer) or ``channel.lifecycle`` (``name``
such as ``channel.attached`` plus ``data`` describing the state change). Each
envelope carries exactly one event, as Ably's queue envelopes do today. A
message also carries what Ably sends of it: ``serial`` (TM2r), ``action`` (the
TM5 wire number: 0 create, 1 update, 2 delete, 4 summary, 5 append),
``version`` (TM2s) and ``annotations`` (TM2u); each update, delete, append and
summary of a message is an envelope of its own.

Data is either **decoded** (the encoding chain undone, decrypting with the
route's cipher) or **encoded** (left in its wire form with its ``encoding``),
per route. Either way the JSON is safe: binary becomes base64 with ``base64``
appended to ``encoding``; in encoded mode JSON values become JSON text with
``json`` appended. Bridge metadata (route id, the event id used for de-duplication,
serial) lives on the object, outside the Integrations JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ably_bridge.encoding.payload import append_encoding, decode_data
from ably_bridge.envelope.shape import (
    ITEMS_KEY,
    LIFECYCLE_EVENTS,
    SOURCE_LIFECYCLE,
    SOURCE_MESSAGE,
    SOURCE_PRESENCE,
    message_event_id,
)
from ably_bridge.errors import AblyException, EncodingError, ErrorCode

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher

__all__ = [
    "DataMode",
    "Envelope",
    "EnvelopeBuilder",
    "MessageLike",
    "PresenceMessageLike",
    "UndecodableEvent",
    "dumps",
]

DataMode = Literal["decoded", "encoded"]
MESSAGE_SUMMARY = 4  # TM5

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_dumps() -> Callable[[Any], str]:
    """``_ENCODER.encode``, with the C encoder made once rather than on every call.

    ``JSONEncoder.encode`` builds its C encoder (and a dict for detecting
    cycles) per call, which is most of the cost for an event-sized object.
    Envelopes come from decoded frames, which cannot hold cycles; a cyclic
    value given anyway ends in ``RecursionError`` instead of ``ValueError``.
    """
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:  # (no C accelerator: this Python's own encoder)
        return _ENCODER.encode
    encode = make(
        None, _not_serializable, json.encoder.encode_basestring,
        None, ":", ",", False, False, False,
    )  # fmt: skip

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


dumps = _compact_dumps()
_BINARY = (bytes, bytearray, memoryview)


class PayloadLike(Protocol):
    """What the builder reads from messages and presence messages alike."""

    @property
    def id(self) -> str | None: ...
    @property
    def data(self) -> Any: ...
    @property
    def encoding(self) -> str | None: ...
    @property
    def extras(self) -> Mapping[str, Any] | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def connection_id(self) -> str | None: ...
    @property
    def timestamp(self) -> int | None: ...


class MessageLike(PayloadLike, Protocol):
    """What the builder reads from ``ably_bridge.protocol.models.Message``."""

    @property
    def name(self) -> str | None: ...


class PresenceMessageLike(PayloadLike, Protocol):
    """What the builder reads from ``ably_bridge.protocol.models.PresenceMessage``."""

    @property
    def action(self) -> int: ...


class UndecodableEvent(EncodingError):
    """The event's data could not be decoded; it goes to the dead-letter stream."""


@dataclass(slots=True, eq=False)
class Envelope:
    """One event, ready for every target of one route.

    ``item`` is the wire-form message, presence message or lifecycle body;
    ``event_id`` is the de-duplication id (message or presence ``id``; for a
    message operation, :func:`~.shape.message_event_id`); ``serial`` is the
    event's channel position (a message's ``serial``, an operation's
    ``version.serial``).
    """

    source: str
    app_id: str
    channel: str
    site: str
    rule_id: str
    timestamp: int
    item: dict[str, Any]
    event_id: str
    name: str | None = None
    serial: str | None = None
    _json: str | None = field(default=None, repr=False)
    _dedup: str | None = field(default=None, repr=False)
    _route_key: str | None = field(default=None, repr=False)

    @property
    def dedup_key(self) -> str:
        """Source-qualified id: ``m:<id>`` (``m:<id>@<version serial>`` for an update,
        delete or append), ``p:<id>`` or ``l:<id>`` (made once: it is
        read for the dedup window, the sinks' marks and the Celery task id)."""
        key = self._dedup
        if key is None:
            key = self._dedup = f"{self.source[8]}:{self.event_id}"
        return key

    @property
    def route_key(self) -> str:
        """``<route id>|<dedup key>``: the event on its route (made once: the key of the
        bridge's in-memory dedup window and the mark of the Redis Streams sink)."""
        key = self._route_key
        if key is None:
            key = self._route_key = f"{self.rule_id}|{self.dedup_key}"
        return key

    @property
    def short_source(self) -> str:
        """``message``, ``presence`` or ``lifecycle``."""
        return self.source[8:]

    def to_dict(self) -> dict[str, Any]:
        """The Integrations envelope as a dict (a fresh one on each call)."""
        out: dict[str, Any] = {
            "source": self.source,
            "appId": self.app_id,
            "channel": self.channel,
            "site": self.site,
            "ruleId": self.rule_id,
            "timestamp": self.timestamp,
        }
        if self.source == SOURCE_MESSAGE:
            out["messages"] = [dict(self.item)]
        elif self.source == SOURCE_PRESENCE:
            out["presence"] = [dict(self.item)]
        else:
            out["name"] = self.name
            out["data"] = dict(self.item)
        return out

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`, computed once.

        Messages and presence: the constant head (source .. ruleId) is encoded
        once per (source, app, channel, site, route) and only the event is
        encoded per call; the text is the same as ``dumps(self.to_dict())``.
        """
        if self._json is None:
            if self.source == SOURCE_LIFECYCLE:
                self._json = dumps(self.to_dict())
            else:
                head = _json_head(self.source, self.app_id, self.channel, self.site, self.rule_id)
                items = _ITEMS_KEY[self.source]
                self._json = f"{head}{self.timestamp},{items}[{dumps(self.item)}]}}"
        return self._json

    def size(self) -> int:
        """Size in bytes of the JSON form (UTF-8)."""
        text = self.to_json()
        return len(text) if text.isascii() else len(text.encode("utf-8"))

    def flat_fields(self) -> dict[str, str]:
        """Envelope and event fields as strings, for a flat Redis Stream entry.

        Structured values (``extras``, lifecycle ``data``, JSON ``data``) are JSON
        text; JSON ``data`` gets ``json`` appended to its ``encoding``.
        """
        out = {
            "source": self.source,
            "appId": self.app_id,
            "channel": self.channel,
            "site": self.site,
            "ruleId": self.rule_id,
            "timestamp": str(self.timestamp),
        }
        if self.source == SOURCE_LIFECYCLE:
            out["name"] = self.name or ""
            out["data"] = dumps(self.item)
            return out
        encoding = self.item.get("encoding")
        for key, value in self.item.items():
            if key == "timestamp" or key == "encoding":
                continue
            if key == "data" and not isinstance(value, str):
                out["data"] = dumps(value)
                encoding = append_encoding(encoding, "json")
            elif isinstance(value, str):
                out[key] = value
            elif isinstance(value, (dict, list)):
                out[key] = dumps(value)
            else:
                out[key] = str(value)
        if encoding:
            out["encoding"] = encoding
        return out


_ITEMS_KEY = {source: f'"{key}":' for source, key in ITEMS_KEY.items()}


@lru_cache(maxsize=8192)
def _json_head(source: str, app_id: str, channel: str, site: str, rule_id: str) -> str:
    """``{"source":..,"appId":..,"channel":..,"site":..,"ruleId":..,"timestamp":``."""
    head = dumps(
        {"source": source, "appId": app_id, "channel": channel, "site": site, "ruleId": rule_id}
    )
    return head[:-1] + ',"timestamp":'


def _json_safe_data(
    data: Any, encoding: str | None, mode: DataMode, cipher: ChannelCipher | None
) -> tuple[Any, str | None]:
    """(data, encoding) for the envelope; raises :class:`UndecodableEvent`."""
    if mode == "decoded" and encoding:
        result = decode_data(data, encoding, cipher)
        if result.error is not None:
            raise UndecodableEvent(
                f"cannot decode data: {result.error.message}",
                result.error.code,
                400,
                None,
                result.error,
            )
        data, encoding = result.data, None
    if isinstance(data, _BINARY):
        return base64.b64encode(data).decode("ascii"), append_encoding(encoding, "base64")
    if mode == "encoded" and isinstance(data, (dict, list)):
        return dumps(data), append_encoding(encoding, "json")
    return data, encoding


def _fallback_id(channel: str, item: Mapping[str, Any]) -> str:
    """A deterministic id for an event without one (should not happen on realtime, TM2a)."""
    digest = hashlib.sha256(f"{channel}\0{dumps(item)}".encode()).hexdigest()[:32]
    return f"sha256:{digest}"


def _enum_name(value: Any) -> str:
    raw = getattr(value, "name", None) if not isinstance(value, str) else value
    if raw is None:
        raw = str(value)
    return str(raw).lower()


class EnvelopeBuilder:
    """Builds envelopes for one app and site; the route supplies ``ruleId`` and data mode."""

    __slots__ = ("app_id", "site")

    def __init__(self, app_id: str, site: str) -> None:
        self.app_id = app_id
        self.site = site

    def message(
        self,
        channel: str,
        message: MessageLike,
        route_id: str,
        *,
        mode: DataMode = "decoded",
        cipher: ChannelCipher | None = None,
        now_ms: int | None = None,
    ) -> Envelope:
        """The envelope of one channel message; :class:`UndecodableEvent` if undecodable."""
        item, timestamp = _common_item(message, message.name, mode, cipher, now_ms)
        msg_id = message.id
        serial = getattr(message, "serial", None)
        if serial is not None:
            item["serial"] = serial
        action = getattr(message, "action", None)
        if action is not None:
            item["action"] = int(action)
        for attr in ("version", "annotations"):  # TM2s, TM2u (protocol v4+)
            value = getattr(message, attr, None)
            if value:
                item[attr] = value
        event_id = msg_id if msg_id is not None else _fallback_id(channel, item)
        if action:  # an update, delete, append or summary of message ``msg_id`` (TM2j)
            return self._operation(channel, item, route_id, event_id, message.name, now_ms)
        return self._make(
            SOURCE_MESSAGE, channel, route_id, int(timestamp or 0), item, event_id,
            message.name, serial,
        )  # fmt: skip

    def _operation(
        self,
        channel: str,
        item: dict[str, Any],
        route_id: str,
        msg_id: str,
        name: str | None,
        now_ms: int | None,
    ) -> Envelope:
        """The envelope of a message operation: an event of its own (:func:`message_event_id`).

        Its time and channel position are the operation's (``version.timestamp``
        and ``version.serial``, TM2s), so a checkpoint moves past it; a summary
        has neither (it keeps the message's serial, so it never moves one) and
        is timed when received.
        """
        version = item.get("version")
        version = version if isinstance(version, Mapping) else {}
        serial = item.get("serial")
        if item["action"] == MESSAGE_SUMMARY:
            when = now_ms if now_ms is not None else item.get("timestamp")
        else:
            when = version.get("timestamp") or item.get("timestamp") or now_ms
            serial = version.get("serial") or serial
        timestamp = int(when or 0)
        event_id = message_event_id(msg_id, item, timestamp)
        serial = serial if isinstance(serial, str) else None
        return self._make(
            SOURCE_MESSAGE, channel, route_id, timestamp, item, event_id, name, serial
        )

    def presence(
        self,
        channel: str,
        message: PresenceMessageLike,
        route_id: str,
        *,
        mode: DataMode = "decoded",
        cipher: ChannelCipher | None = None,
        now_ms: int | None = None,
    ) -> Envelope:
        """The envelope of one presence message (``action`` stays the wire integer)."""
        item, timestamp = _common_item(message, None, mode, cipher, now_ms)
        msg_id = message.id
        item["action"] = int(message.action)
        event_id = msg_id if msg_id is not None else _fallback_id(channel, item)
        return self._make(SOURCE_PRESENCE, channel, route_id, int(timestamp or 0), item, event_id)

    def lifecycle(
        self,
        channel: str,
        event: Any,
        route_id: str,
        *,
        now_ms: int,
        previous: Any = None,
        current: Any = None,
        reason: AblyException | None = None,
        resumed: bool | None = None,
    ) -> Envelope:
        """The envelope of a channel state change, named ``channel.<event>``.

        ``event``/``previous``/``current`` may be strings or enums (their name is
        used, lower-cased), e.g. a realtime ``ChannelStateChange``'s fields.
        """
        event_name = _enum_name(event)
        if event_name not in LIFECYCLE_EVENTS:
            raise AblyException(
                f"unknown channel lifecycle event {event_name!r}", ErrorCode.BAD_REQUEST, 400
            )
        current_name = _enum_name(current) if current is not None else event_name
        data: dict[str, Any] = {
            "channelId": channel,
            "name": channel,
            "status": {"isActive": current_name == "attached"},
            "current": current_name,
        }
        if previous is not None:
            data["previous"] = _enum_name(previous)
        if resumed is not None:
            data["resumed"] = bool(resumed)
        if reason is not None:
            data["reason"] = reason.to_dict()
        name = f"channel.{event_name}"
        event_id = f"{channel}:{name}:{now_ms}"
        return self._make(SOURCE_LIFECYCLE, channel, route_id, now_ms, data, event_id, name)

    def _make(
        self,
        source: str,
        channel: str,
        route_id: str,
        timestamp: int,
        item: dict[str, Any],
        event_id: str,
        name: str | None = None,
        serial: str | None = None,
    ) -> Envelope:
        """One envelope of this app and site (the builders above fill in the rest)."""
        return Envelope(
            source, self.app_id, channel, self.site, route_id, timestamp, item, event_id,
            name, serial,
        )  # fmt: skip


def _common_item(
    message: PayloadLike,
    name: str | None,
    mode: DataMode,
    cipher: ChannelCipher | None,
    now_ms: int | None,
) -> tuple[dict[str, Any], int | None]:
    """The fields messages and presence messages share, in wire order, and the timestamp."""
    _raise_decode_error(message, mode)
    data, encoding = _json_safe_data(message.data, message.encoding, mode, cipher)
    item: dict[str, Any] = {}
    if message.id is not None:
        item["id"] = message.id
    if name is not None:
        item["name"] = name
    if message.client_id is not None:
        item["clientId"] = message.client_id
    if message.connection_id is not None:
        item["connectionId"] = message.connection_id
    timestamp = message.timestamp if message.timestamp is not None else now_ms
    if timestamp is not None:
        item["timestamp"] = timestamp
    if data is not None:
        item["data"] = data
    if encoding:
        item["encoding"] = encoding
    if message.extras:
        item["extras"] = dict(message.extras)
    return item, timestamp


def _raise_decode_error(message: Any, mode: DataMode) -> None:
    """A message the client library already failed to decode is undecodable too."""
    if mode != "decoded":
        return
    error = getattr(message, "decode_error", None)
    if error is not None:
        code = getattr(error, "code", ErrorCode.INVALID_DATA_OR_ENCODING)
        text = getattr(error, "message", str(error))
        raise UndecodableEvent(f"cannot decode data: {text}", int(code), 400, None, None)
