"""The wire model: ProtocolMessage, Message, PresenceMessage, ConnectionDetails, ErrorInfo.

This module owns the Python shape of what travels on the realtime and REST
wires (TR4, TM2, TP3, CD2, TI1) and its mapping to and from plain dicts with the
camelCase keys of the protocol. It does no framing (see
:mod:`ably_bridge.protocol.codec`) and no I/O.

Conventions:

* ``to_dict(binary=...)`` emits the wire dict: camelCase keys, ``None`` fields
  omitted (RTL6i3, RSL1e). With ``binary=False`` (JSON transport) bytes data
  becomes base64 text with ``base64`` appended to ``encoding`` (RSL4b/RSL4d);
  with ``binary=True`` (msgpack) bytes stay bytes. ``to_dict`` expects payloads
  already encoded (``encoded()``); it never copies nested dicts.
* ``from_dict`` never decodes payloads. ``ProtocolMessage.from_dict`` checks
  the types of its own fields and raises :class:`EncodingError` 40013 on a
  malformed frame; inside ``Message``/``PresenceMessage`` an optional field of
  the wrong type is dropped (set to ``None``) so one odd field does not lose a
  whole frame of messages. Unknown keys are ignored and ``null`` means absent
  (RSF1).
* Payload decoding (``decoded()``, ``from_encoded``) never raises: a failure
  leaves the remaining ``encoding`` in place and sets ``decode_error`` (RSL6b).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Self

from ably_bridge.encoding.payload import append_encoding, decode_data, encode_data, json_text
from ably_bridge.errors import AblyException, EncodingError, ErrorCode
from ably_bridge.protocol.actions import (
    Action,
    MessageAction,
    PresenceAction,
    action_from_wire,
    message_action_from_wire,
    presence_action_from_wire,
)

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher, CipherParams

__all__ = [
    "DEFAULT_CONNECTION_STATE_TTL",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_IDLE_INTERVAL",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ConnectionDetails",
    "ErrorInfo",
    "Message",
    "PresenceMessage",
    "ProtocolMessage",
]

# ErrorInfo (TI1) is the same object as the library's exception.
ErrorInfo = AblyException

# CD2 / DF1 defaults, used when CONNECTED omits a field.
DEFAULT_MAX_MESSAGE_SIZE = 65536  # bytes (TO3l8)
DEFAULT_MAX_FRAME_SIZE = 524288  # bytes
DEFAULT_CONNECTION_STATE_TTL = 120.0  # seconds; 120000 ms on the wire
DEFAULT_MAX_IDLE_INTERVAL = 15.0  # seconds; 15000 ms on the wire

_BINARY_TYPES = (bytes, bytearray, memoryview)


# -- field readers ----------------------------------------------------------
# Tolerant readers (message level): a value of the wrong type reads as None.
def _opt_str(value: Any) -> str | None:
    return value if type(value) is str else None


def _opt_int(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    return None


def _opt_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    return None


# Strict readers (frame level): a value of the wrong type makes the frame malformed.
def _malformed(where: str, expected: str) -> EncodingError:
    return EncodingError(
        f"malformed protocol message: {where} must be {expected}",
        ErrorCode.INVALID_DATA_OR_ENCODING,
        400,
    )


def _req_str(raw: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = raw.get(key)
    if value is None or type(value) is str:
        return value
    raise _malformed(where + key, "a string")


def _req_int(raw: Mapping[str, Any], key: str, where: str = "") -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    raise _malformed(where + key, "an integer")


def _req_map(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    raise _malformed(key, "an object")


def _req_list(raw: Mapping[str, Any], key: str) -> list[Any] | None:
    value = raw.get(key)
    if value is None or type(value) is list:
        return value
    if isinstance(value, tuple):
        return list(value)
    raise _malformed(key, "an array")


def _req_dict_list(raw: Mapping[str, Any], key: str) -> list[dict[str, Any]] | None:
    items = _req_list(raw, key)
    if items is None:
        return None
    for item in items:
        if not isinstance(item, Mapping):
            raise _malformed(key, "an array of objects")
    return items


def _wire_data(data: Any, encoding: str | None, binary: bool) -> tuple[Any, str | None]:
    """Data and encoding as the transport carries them (RSL4b/RSL4d)."""
    if isinstance(data, _BINARY_TYPES):
        if binary:
            return (data if type(data) is bytes else bytes(data)), encoding
        return base64.b64encode(data).decode("ascii"), append_encoding(encoding, "base64")
    return data, encoding


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _not_a_map(what: str, raw: object) -> EncodingError:
    return EncodingError(
        f"a {what} must be an object/map, not {type(raw).__name__}",
        ErrorCode.INVALID_DATA_OR_ENCODING,
        400,
    )


class _Payload:
    """Shared payload behaviour of Message and PresenceMessage (RSL4, RSL6, TM6)."""

    __slots__ = ()

    data: Any
    encoding: str | None
    client_id: str | None
    extras: dict[str, Any] | None
    decode_error: AblyException | None

    def _with_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> Self:
        raise NotImplementedError

    def _set_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> None:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    def encoded(self, cipher: ChannelCipher | CipherParams | None = None) -> Self:
        """A copy with ``data`` encoded for sending (RSL4, RSL5); raises 40013 on bad data."""
        data, encoding = encode_data(self.data, self.encoding, cipher)
        return self._with_payload(data, encoding, None)

    def decoded(self, cipher: ChannelCipher | CipherParams | None = None) -> Self:
        """A copy with ``data`` decoded (RSL6); never raises, see ``decode_error``."""
        result = decode_data(self.data, self.encoding, cipher)
        return self._with_payload(result.data, result.encoding, result.error)

    def decode_in_place(
        self, cipher: ChannelCipher | CipherParams | None = None
    ) -> AblyException | None:
        """Decode this object's ``data`` in place (RSL6); returns and stores the error, if any.

        For receive paths that own freshly parsed messages and want no copy.
        """
        result = decode_data(self.data, self.encoding, cipher)
        self._set_payload(result.data, result.encoding, result.error)
        return result.error

    @classmethod
    def from_encoded(
        cls, obj: Mapping[str, Any], cipher: ChannelCipher | CipherParams | None = None
    ) -> Self:
        """Parse a wire dict and decode its payload (the official ``ably`` package's name)."""
        item = cls.from_dict(obj)
        if item.encoding is not None:  # nothing to undo otherwise (RSL6a)
            item.decode_in_place(cipher)
        return item

    @classmethod
    def from_encoded_array(
        cls, objs: Sequence[Mapping[str, Any]], cipher: ChannelCipher | CipherParams | None = None
    ) -> list[Self]:
        """:meth:`from_encoded` over a wire array; 40013 if ``objs`` is not an array."""
        if not isinstance(objs, (list, tuple)):
            raise EncodingError(
                f"expected an array of messages, not {type(objs).__name__}",
                ErrorCode.INVALID_DATA_OR_ENCODING,
                400,
            )
        return [cls.from_encoded(obj, cipher) for obj in objs]

    def _payload_size(self) -> int:
        # TM6 counts data, clientId and JSON(extras). The spec says "string length";
        # we count UTF-8 bytes, which is what maxMessageSize limits on the server
        # and never under-counts. Data: str -> UTF-8 bytes, binary -> byte count,
        # dict/list -> length of its JSON text, anything else -> 0.
        size = 0
        data = self.data
        if isinstance(data, str):
            size += _utf8_len(data)
        elif isinstance(data, _BINARY_TYPES):
            size += memoryview(data).nbytes
        elif isinstance(data, (dict, list)):
            size += _utf8_len(json_text(data))
        if self.client_id:
            size += _utf8_len(self.client_id)
        if self.extras:
            size += _utf8_len(json_text(self.extras))
        return size


@dataclass(slots=True, eq=True)
class Message(_Payload):
    """A channel message (TM2). ``Message("greet", "hi")``; other fields by keyword."""

    name: str | None = None
    data: Any = None
    _: KW_ONLY
    id: str | None = None
    client_id: str | None = None
    connection_id: str | None = None
    connection_key: str | None = field(default=None, repr=False)  # secret (TM2h)
    encoding: str | None = None
    extras: dict[str, Any] | None = None
    timestamp: int | None = None  # ms since the epoch
    serial: str | None = None  # TM2r, protocol v4+
    action: MessageAction | int | None = None  # TM2j
    version: dict[str, Any] | None = None  # TM2s
    annotations: dict[str, Any] | None = None  # TM2u
    decode_error: AblyException | None = field(default=None, compare=False, repr=False)

    def _with_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> Self:
        return type(self)(
            self.name,
            data,
            id=self.id,
            client_id=self.client_id,
            connection_id=self.connection_id,
            connection_key=self.connection_key,
            encoding=encoding,
            extras=self.extras,
            timestamp=self.timestamp,
            serial=self.serial,
            action=self.action,
            version=self.version,
            annotations=self.annotations,
            decode_error=error,
        )

    def _set_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> None:
        self.data, self.encoding, self.decode_error = data, encoding, error

    def to_dict(self, *, binary: bool) -> dict[str, Any]:
        """The wire dict (camelCase, ``None`` omitted); see the module docstring."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        if self.name is not None:
            out["name"] = self.name
        encoding = self.encoding
        if self.data is not None:
            out["data"], encoding = _wire_data(self.data, encoding, binary)
        if encoding:
            out["encoding"] = encoding
        if self.client_id is not None:
            out["clientId"] = self.client_id
        if self.connection_id is not None:
            out["connectionId"] = self.connection_id
        if self.connection_key is not None:
            out["connectionKey"] = self.connection_key
        if self.extras is not None:
            out["extras"] = self.extras
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.serial is not None:
            out["serial"] = self.serial
        if self.action is not None:
            out["action"] = int(self.action)
        if self.version is not None:
            out["version"] = self.version
        if self.annotations is not None:
            out["annotations"] = self.annotations
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        """Parse a wire dict without decoding ``data``; 40013 only if ``raw`` is not a map."""
        if not isinstance(raw, Mapping):
            raise _not_a_map("message", raw)
        get = raw.get
        action = get("action")
        timestamp = get("timestamp")
        return cls(
            _opt_str(get("name")),
            get("data"),
            id=_opt_str(get("id")),
            client_id=_opt_str(get("clientId")),
            connection_id=_opt_str(get("connectionId")),
            connection_key=_opt_str(get("connectionKey")),
            encoding=_opt_str(get("encoding")) or None,
            extras=_opt_dict(get("extras")),
            timestamp=timestamp if type(timestamp) is int else _opt_int(timestamp),
            serial=_opt_str(get("serial")),
            action=message_action_from_wire(action) if type(action) is int else None,
            version=_opt_dict(get("version")),
            annotations=_opt_dict(get("annotations")),
        )

    def size(self) -> int:
        """TM6 size: name + data + clientId + JSON(extras), counted in UTF-8 bytes."""
        size = self._payload_size()
        if self.name:
            size += _utf8_len(self.name)
        return size


@dataclass(slots=True, eq=True)
class PresenceMessage(_Payload):
    """A presence event or member (TP3): ``PresenceMessage(PresenceAction.ENTER, client_id=..)``."""

    action: PresenceAction | int = PresenceAction.ABSENT
    _: KW_ONLY
    id: str | None = None
    client_id: str | None = None
    connection_id: str | None = None
    data: Any = None
    encoding: str | None = None
    extras: dict[str, Any] | None = None
    timestamp: int | None = None  # ms since the epoch
    decode_error: AblyException | None = field(default=None, compare=False, repr=False)

    def _with_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> Self:
        return type(self)(
            self.action,
            id=self.id,
            client_id=self.client_id,
            connection_id=self.connection_id,
            data=data,
            encoding=encoding,
            extras=self.extras,
            timestamp=self.timestamp,
            decode_error=error,
        )

    def _set_payload(self, data: Any, encoding: str | None, error: AblyException | None) -> None:
        self.data, self.encoding, self.decode_error = data, encoding, error

    @property
    def member_key(self) -> str:
        """``connectionId:clientId``, the presence map key (TP3h)."""
        return f"{self.connection_id}:{self.client_id}"

    def is_synthesized(self) -> bool:
        """True when ``connection_id`` is not a prefix of ``id`` (RTP2b1), e.g. a server LEAVE."""
        msg_id, conn_id = self.id, self.connection_id
        return not (msg_id and conn_id and msg_id.startswith(conn_id))

    def _id_order(self) -> tuple[int, int] | None:
        # ids are "connectionId:msgSerial:index" (RTP2b2); None if not in that form.
        parts = self.id.rsplit(":", 2) if self.id else ()
        if len(parts) != 3:
            return None
        try:
            return int(parts[1]), int(parts[2])
        except ValueError:
            return None

    def is_newer_than(self, other: PresenceMessage) -> bool:
        """Whether this (incoming) message supersedes ``other`` (the stored one) (RTP2b).

        RTP2b1: if either is synthesized, compare timestamps; equal => incoming
        wins (RTP2b1a). RTP2b2: otherwise compare msgSerial, then index, as
        integers; the same position is not newer. Ids that do not parse fall
        back to the timestamp rule.
        """
        if not (self.is_synthesized() or other.is_synthesized()):
            mine, theirs = self._id_order(), other._id_order()
            if mine is not None and theirs is not None:
                return mine > theirs
        return (self.timestamp or 0) >= (other.timestamp or 0)

    def to_dict(self, *, binary: bool) -> dict[str, Any]:
        """The wire dict (camelCase, ``None`` omitted; ``action`` always present)."""
        out: dict[str, Any] = {"action": int(self.action)}
        if self.id is not None:
            out["id"] = self.id
        if self.client_id is not None:
            out["clientId"] = self.client_id
        if self.connection_id is not None:
            out["connectionId"] = self.connection_id
        encoding = self.encoding
        if self.data is not None:
            out["data"], encoding = _wire_data(self.data, encoding, binary)
        if encoding:
            out["encoding"] = encoding
        if self.extras is not None:
            out["extras"] = self.extras
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        """Parse a wire dict without decoding ``data``; 40013 only if ``raw`` is not a map."""
        if not isinstance(raw, Mapping):
            raise _not_a_map("presence message", raw)
        get = raw.get
        action = get("action")
        return cls(
            presence_action_from_wire(action) if type(action) is int else PresenceAction.ABSENT,
            id=_opt_str(get("id")),
            client_id=_opt_str(get("clientId")),
            connection_id=_opt_str(get("connectionId")),
            data=get("data"),
            encoding=_opt_str(get("encoding")) or None,
            extras=_opt_dict(get("extras")),
            timestamp=_opt_int(get("timestamp")),
        )

    def size(self) -> int:
        """TM6-style size: data + clientId + JSON(extras), counted in UTF-8 bytes."""
        return self._payload_size()


def _ms_to_s(value: int | None, default: float) -> float:
    return default if value is None else value / 1000.0


def _s_to_ms(value: float) -> int:
    return round(value * 1000)


@dataclass(slots=True, kw_only=True)
class ConnectionDetails:
    """Server-chosen connection parameters from CONNECTED (CD2, RTN21).

    Durations are seconds (float) on the Python side and milliseconds on the wire.
    """

    client_id: str | None = None
    connection_key: str | None = field(default=None, repr=False)  # secret
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_inbound_rate: int | None = None
    max_outbound_rate: int | None = None
    connection_state_ttl: float = DEFAULT_CONNECTION_STATE_TTL
    max_idle_interval: float = DEFAULT_MAX_IDLE_INTERVAL  # 0 = no idle limit
    server_id: str | None = None
    site_code: str | None = None
    objects_gc_grace_period: float | None = None  # seconds (LiveObjects)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.client_id is not None:
            out["clientId"] = self.client_id
        if self.connection_key is not None:
            out["connectionKey"] = self.connection_key
        out["maxMessageSize"] = self.max_message_size
        out["maxFrameSize"] = self.max_frame_size
        if self.max_inbound_rate is not None:
            out["maxInboundRate"] = self.max_inbound_rate
        if self.max_outbound_rate is not None:
            out["maxOutboundRate"] = self.max_outbound_rate
        out["connectionStateTtl"] = _s_to_ms(self.connection_state_ttl)
        out["maxIdleInterval"] = _s_to_ms(self.max_idle_interval)
        if self.server_id is not None:
            out["serverId"] = self.server_id
        if self.site_code is not None:
            out["siteCode"] = self.site_code
        if self.objects_gc_grace_period is not None:
            out["objectsGCGracePeriod"] = _s_to_ms(self.objects_gc_grace_period)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ConnectionDetails:
        """Parse ``connectionDetails``; absent fields take the CD2 defaults; 40013 if malformed."""
        if not isinstance(raw, Mapping):
            raise _not_a_map("connectionDetails", raw)
        where = "connectionDetails."
        max_message_size = _req_int(raw, "maxMessageSize", where)
        max_frame_size = _req_int(raw, "maxFrameSize", where)
        gc_grace = _req_int(raw, "objectsGCGracePeriod", where)
        return cls(
            client_id=_req_str(raw, "clientId", where),
            connection_key=_req_str(raw, "connectionKey", where),
            max_message_size=(
                DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
            ),
            max_frame_size=DEFAULT_MAX_FRAME_SIZE if max_frame_size is None else max_frame_size,
            max_inbound_rate=_req_int(raw, "maxInboundRate", where),
            max_outbound_rate=_req_int(raw, "maxOutboundRate", where),
            connection_state_ttl=_ms_to_s(
                _req_int(raw, "connectionStateTtl", where), DEFAULT_CONNECTION_STATE_TTL
            ),
            max_idle_interval=_ms_to_s(
                _req_int(raw, "maxIdleInterval", where), DEFAULT_MAX_IDLE_INTERVAL
            ),
            server_id=_req_str(raw, "serverId", where),
            site_code=_req_str(raw, "siteCode", where),
            objects_gc_grace_period=None if gc_grace is None else gc_grace / 1000.0,
        )


@dataclass(slots=True, eq=True)
class ProtocolMessage:
    """One realtime frame (TR4). ``ProtocolMessage(Action.ATTACH, channel="chat")``.

    ``repr`` leaves out ``connection_key`` and ``auth`` (both secrets).
    """

    action: Action | int = Action.HEARTBEAT
    _: KW_ONLY
    id: str | None = None
    channel: str | None = None
    channel_serial: str | None = None
    connection_id: str | None = None
    connection_key: str | None = field(default=None, repr=False)  # secret
    connection_details: ConnectionDetails | None = None
    msg_serial: int | None = None
    count: int | None = None
    error: AblyException | None = None
    flags: int = 0
    timestamp: int | None = None  # ms since the epoch
    messages: list[Message] = field(default_factory=list)
    presence: list[PresenceMessage] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    state: list[dict[str, Any]] = field(default_factory=list)
    auth: dict[str, Any] | None = field(default=None, repr=False)  # {"accessToken": ...}
    params: dict[str, str] | None = None
    res: list[dict[str, Any]] | None = None  # TR4s, ACK only

    def has_flag(self, flag: int) -> bool:
        """Whether every bit of ``flag`` is set in ``flags`` (TR3)."""
        return flag != 0 and (self.flags & flag) == flag

    def fill_defaults(self) -> None:
        """Give contained messages their defaults from this frame (TM2a/c/f, TP3a/d/g).

        ``id`` = ``<frame id>:<index>``, ``connection_id`` and ``timestamp`` copied
        from the frame, each only where the message has none.
        """
        frame_id, conn_id, stamp = self.id, self.connection_id, self.timestamp
        if frame_id is None and conn_id is None and stamp is None:
            return
        for index, message in enumerate(self.messages):
            if message.id is None and frame_id is not None:
                message.id = f"{frame_id}:{index}"  # TM2a
            if message.connection_id is None:
                message.connection_id = conn_id  # TM2c
            if message.timestamp is None:
                message.timestamp = stamp  # TM2f
        for index, member in enumerate(self.presence):
            if member.id is None and frame_id is not None:
                member.id = f"{frame_id}:{index}"  # TP3a
            if member.connection_id is None:
                member.connection_id = conn_id  # TP3d
            if member.timestamp is None:
                member.timestamp = stamp  # TP3g

    def to_dict(self, *, binary: bool) -> dict[str, Any]:
        """The wire dict (camelCase, empty fields omitted)."""
        out: dict[str, Any] = {"action": int(self.action)}
        if self.id is not None:
            out["id"] = self.id
        if self.channel is not None:
            out["channel"] = self.channel
        if self.channel_serial is not None:
            out["channelSerial"] = self.channel_serial
        if self.connection_id is not None:
            out["connectionId"] = self.connection_id
        if self.connection_key is not None:
            out["connectionKey"] = self.connection_key
        if self.connection_details is not None:
            out["connectionDetails"] = self.connection_details.to_dict()
        if self.msg_serial is not None:
            out["msgSerial"] = self.msg_serial
        if self.count is not None:
            out["count"] = self.count
        if self.error is not None:
            out["error"] = self.error.to_dict()
        if self.flags:
            out["flags"] = int(self.flags)
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.messages:
            out["messages"] = [m.to_dict(binary=binary) for m in self.messages]
        if self.presence:
            out["presence"] = [p.to_dict(binary=binary) for p in self.presence]
        if self.annotations:
            out["annotations"] = self.annotations
        if self.state:
            out["state"] = self.state
        if self.auth is not None:
            out["auth"] = self.auth
        if self.params is not None:
            out["params"] = self.params
        if self.res is not None:
            out["res"] = self.res
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProtocolMessage:
        """Parse a frame dict, check field types, apply TM2/TP3 defaults; no payload decoding.

        Raises :class:`EncodingError` 40013 when the frame is malformed (not a
        map, non-string keys, a field of the wrong type).
        """
        if not isinstance(raw, Mapping):
            raise _not_a_map("protocol message", raw)
        for key in raw:
            if type(key) is not str:
                raise _malformed("every key", "a string")
        action = _req_int(raw, "action")
        flags = _req_int(raw, "flags")
        messages = _req_list(raw, "messages")
        presence = _req_list(raw, "presence")
        error = _req_map(raw, "error")
        details = _req_map(raw, "connectionDetails")
        params = _req_map(raw, "params")
        auth = _req_map(raw, "auth")
        pm = cls(
            # A frame without "action" reads as HEARTBEAT (0): encoders that omit
            # zero values produce exactly that.
            action_from_wire(action) if action is not None else Action.HEARTBEAT,
            id=_req_str(raw, "id"),
            channel=_req_str(raw, "channel"),
            channel_serial=_req_str(raw, "channelSerial"),
            connection_id=_req_str(raw, "connectionId"),
            connection_key=_req_str(raw, "connectionKey"),
            connection_details=None if details is None else ConnectionDetails.from_dict(details),
            msg_serial=_req_int(raw, "msgSerial"),
            count=_req_int(raw, "count"),
            error=None if error is None else AblyException.from_dict(error),
            flags=flags or 0,
            timestamp=_req_int(raw, "timestamp"),
            messages=[Message.from_dict(m) for m in messages] if messages else [],
            presence=[PresenceMessage.from_dict(p) for p in presence] if presence else [],
            annotations=_req_dict_list(raw, "annotations") or [],
            state=_req_dict_list(raw, "state") or [],
            auth=_opt_dict(auth),
            params=None if params is None else _string_map(params),
            res=_req_dict_list(raw, "res"),
        )
        pm.fill_defaults()
        return pm


def _string_map(raw: Mapping[str, Any]) -> dict[str, str]:
    """Channel params (RTL4k): string keys; values are strings on the wire (stringify others)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if type(key) is not str:
            raise _malformed("params keys", "strings")
        out[key] = value if type(value) is str else str(value)
    return out
