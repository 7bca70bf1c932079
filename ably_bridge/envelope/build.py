"""Building envelopes: the bridge makes one per event and route.

This module owns :class:`EnvelopeBuilder` (and what it reads of messages,
:class:`MessageLike` and :class:`PresenceMessageLike`): the event's fields in
wire order (``item``), its ids and channel position, and, while it fills in
``item``, the envelope's JSON (:meth:`~.encode.Envelope.to_json`) when every
value is a string or an integer (the common case: otherwise ``to_json`` encodes
``item`` when first asked, as before; the text is the same either way).

Data is either **decoded** (the encoding chain undone, decrypting with the
route's cipher) or **encoded** (left in its wire form with its ``encoding``),
per route. Either way the JSON is safe: binary becomes base64 with ``base64``
appended to ``encoding``; in encoded mode JSON values become JSON text with
``json`` appended.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ably_bridge.encoding.payload import append_encoding, decode_data
from ably_bridge.envelope.encode import ITEMS_JSON_KEY, Envelope, dumps, json_head, json_string
from ably_bridge.envelope.shape import (
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
    "EnvelopeBuilder",
    "MessageLike",
    "PresenceMessageLike",
    "UndecodableEvent",
]

DataMode = Literal["decoded", "encoded"]
MESSAGE_SUMMARY = 4  # TM5
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
        item, text, timestamp = _common_item(message, message.name, mode, cipher, now_ms)
        msg_id = message.id
        serial = getattr(message, "serial", None)
        if serial is not None:
            item["serial"] = serial
            if text is not None:
                text = f'{text},"serial":{json_string(serial)}' if type(serial) is str else None
        action = getattr(message, "action", None)
        if action is not None:
            item["action"] = action = int(action)
            if text is not None:
                text = f'{text},"action":{action}'
        value = getattr(message, "version", None)  # TM2s (protocol v4+)
        if value:
            item["version"] = value
            text = None  # (structured: to_json encodes the item)
        value = getattr(message, "annotations", None)  # TM2u
        if value:
            item["annotations"] = value
            text = None
        event_id = msg_id if msg_id is not None else _fallback_id(channel, item)
        if action:  # an update, delete, append or summary of message ``msg_id`` (TM2j)
            return self._operation(channel, item, route_id, event_id, message.name, now_ms)
        return self._make(
            SOURCE_MESSAGE, channel, route_id, int(timestamp or 0), item, event_id,
            message.name, serial, text,
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
        item, text, timestamp = _common_item(message, None, mode, cipher, now_ms)
        msg_id = message.id
        item["action"] = action = int(message.action)
        if text is not None:
            text = f'{text},"action":{action}'
        event_id = msg_id if msg_id is not None else _fallback_id(channel, item)
        return self._make(
            SOURCE_PRESENCE, channel, route_id, int(timestamp or 0), item, event_id, None, None,
            text,
        )  # fmt: skip

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
        text: str | None = None,
    ) -> Envelope:
        """One envelope of this app and site (the builders above fill in the rest);
        ``text``: the members of ``item``'s JSON, each after a comma, if written."""
        app_id, site = self.app_id, self.site
        made = None
        if text:
            head = json_head(source, app_id, channel, site, route_id)
            made = f"{head}{timestamp},{ITEMS_JSON_KEY[source]}[{{{text[1:]}}}]}}"
        return Envelope(
            source, app_id, channel, site, route_id, timestamp, item, event_id, name, serial, made
        )


def _common_item(
    message: PayloadLike,
    name: str | None,
    mode: DataMode,
    cipher: ChannelCipher | None,
    now_ms: int | None,
) -> tuple[dict[str, Any], str | None, int | None]:
    """The fields messages and presence messages share, in wire order, the JSON text of
    their members so far (``,"<key>":<JSON>`` each, while every value is a string or an
    int; None once one is not, and ``to_json`` then encodes the item) and the timestamp."""
    _raise_decode_error(message, mode)
    data, encoding = message.data, message.encoding
    if encoding or not isinstance(data, str):  # (text with no encoding stays as it is)
        data, encoding = _json_safe_data(data, encoding, mode, cipher)
    item: dict[str, Any] = {}
    text: str | None = ""
    value = message.id
    if value is not None:
        item["id"] = value
        if text is not None:  # (inline, as below: a call per member costs what it saves)
            text = f'{text},"id":{json_string(value)}' if type(value) is str else None
    if name is not None:
        item["name"] = name
        if text is not None:
            text = f'{text},"name":{json_string(name)}' if type(name) is str else None
    value = message.client_id
    if value is not None:
        item["clientId"] = value
        if text is not None:
            text = f'{text},"clientId":{json_string(value)}' if type(value) is str else None
    value = message.connection_id
    if value is not None:
        item["connectionId"] = value
        if text is not None:
            text = f'{text},"connectionId":{json_string(value)}' if type(value) is str else None
    timestamp = message.timestamp if message.timestamp is not None else now_ms
    if timestamp is not None:
        item["timestamp"] = timestamp
        if text is not None:
            text = f'{text},"timestamp":{timestamp}' if type(timestamp) is int else None
    if data is not None:
        item["data"] = data
        if text is not None:
            text = f'{text},"data":{json_string(data)}' if type(data) is str else None
    if encoding:
        item["encoding"] = encoding
        if text is not None:
            text = f'{text},"encoding":{json_string(encoding)}' if type(encoding) is str else None
    if message.extras:
        item["extras"] = dict(message.extras)
        text = None  # (structured: to_json encodes the item)
    return item, text, timestamp


def _raise_decode_error(message: Any, mode: DataMode) -> None:
    """A message the client library already failed to decode is undecodable too."""
    if mode != "decoded":
        return
    error = getattr(message, "decode_error", None)
    if error is not None:
        code = getattr(error, "code", ErrorCode.INVALID_DATA_OR_ENCODING)
        text = getattr(error, "message", str(error))
        raise UndecodableEvent(f"cannot decode data: {text}", int(code), 400, None, None)
