"""Channel messages and presence messages: Message (TM2) and PresenceMessage (TP3).

This module owns the Python shape of the payload-carrying objects of the
realtime and REST wires and their mapping to and from wire dicts with the
protocol's camelCase keys, payload encoding (RSL4/RSL5) and decoding (RSL6),
and their TM6 size. Frames live in :mod:`ably_bridge.protocol.frames`; the
conventions shared by both are in :mod:`ably_bridge.protocol.models`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Self

from ably_bridge.encoding.payload import (
    DeltaContext,
    append_encoding,
    decode_data,
    encode_data,
    json_text,
)
from ably_bridge.errors import AblyException, EncodingError, ErrorCode
from ably_bridge.protocol.actions import (
    MessageAction,
    PresenceAction,
    message_action_from_wire,
    presence_action_from_wire,
)
from ably_bridge.protocol.fields import not_a_map, opt_dict, opt_int, opt_str

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher, CipherParams

__all__ = ["Message", "PresenceMessage"]

_BINARY_TYPES = (bytes, bytearray, memoryview)


def _wire_data(data: Any, encoding: str | None, binary: bool) -> tuple[Any, str | None]:
    """Data and encoding as the transport carries them (RSL4b/RSL4d)."""
    if isinstance(data, _BINARY_TYPES):
        if binary:
            return (data if type(data) is bytes else bytes(data)), encoding
        return base64.b64encode(data).decode("ascii"), append_encoding(encoding, "base64")
    return data, encoding


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


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
        self, cipher: ChannelCipher | CipherParams | None = None, delta: DeltaContext | None = None
    ) -> AblyException | None:
        """Decode this object's ``data`` in place (RSL6); returns and stores the error, if any.

        For receive paths that own freshly parsed messages and want no copy;
        ``delta``: a realtime channel's delta state (``vcdiff`` steps, RTL19).
        """
        result = decode_data(self.data, self.encoding, cipher, delta)
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
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise not_a_map("message", raw)
        get = raw.get
        # Built slot by slot rather than through __init__, whose keyword arguments cost
        # more than the stores: this runs for every inbound message (opt_str written out
        # too). tests/protocol/test_message_frames.py checks that every field is set.
        message = cls.__new__(cls)
        name = get("name")
        message.name = name if type(name) is str else None
        message.data = get("data")
        value = get("id")
        message.id = value if type(value) is str else None
        value = get("clientId")
        message.client_id = value if type(value) is str else None
        value = get("connectionId")
        message.connection_id = value if type(value) is str else None
        value = get("connectionKey")
        message.connection_key = value if type(value) is str else None
        value = get("encoding")
        message.encoding = value if type(value) is str and value else None
        value = get("extras")
        message.extras = None if value is None else opt_dict(value)
        value = get("timestamp")
        message.timestamp = value if type(value) is int else opt_int(value)
        value = get("serial")
        message.serial = value if type(value) is str else None
        value = get("action")
        message.action = message_action_from_wire(value) if type(value) is int else None
        value = get("version")
        message.version = None if value is None else opt_dict(value)
        value = get("annotations")
        message.annotations = None if value is None else opt_dict(value)
        message.decode_error = None
        return message

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
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise not_a_map("presence message", raw)
        get = raw.get
        action = get("action")
        return cls(
            presence_action_from_wire(action) if type(action) is int else PresenceAction.ABSENT,
            id=opt_str(get("id")),
            client_id=opt_str(get("clientId")),
            connection_id=opt_str(get("connectionId")),
            data=get("data"),
            encoding=opt_str(get("encoding")) or None,
            extras=opt_dict(get("extras")),
            timestamp=opt_int(get("timestamp")),
        )

    def size(self) -> int:
        """TM6-style size: data + clientId + JSON(extras), counted in UTF-8 bytes."""
        return self._payload_size()
