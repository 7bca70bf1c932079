"""Realtime frames: ProtocolMessage (TR4) and the ConnectionDetails of CONNECTED (CD2).

This module owns a frame's fields, their strict type checks on the way in
(a malformed frame raises :class:`EncodingError` 40013), the TM2/TP3 defaults a
frame gives the messages it carries, and the wire dict on the way out. The
messages inside are :mod:`ably_bridge.protocol.messages`; framing (JSON or
msgpack bytes) is :mod:`ably_bridge.protocol.codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import Action, action_from_wire
from ably_bridge.protocol.fields import (
    as_dict_list,
    as_int,
    as_list,
    as_map,
    as_str,
    malformed,
    not_a_map,
    opt_dict,
    req_int,
    req_str,
)
from ably_bridge.protocol.messages import Message, PresenceMessage

__all__ = [
    "DEFAULT_CONNECTION_STATE_TTL",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_IDLE_INTERVAL",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ConnectionDetails",
    "ProtocolMessage",
]

# CD2 / DF1 defaults, used when CONNECTED omits a field.
DEFAULT_MAX_MESSAGE_SIZE = 65536  # bytes (TO3l8)
DEFAULT_MAX_FRAME_SIZE = 524288  # bytes
DEFAULT_CONNECTION_STATE_TTL = 120.0  # seconds; 120000 ms on the wire
DEFAULT_MAX_IDLE_INTERVAL = 15.0  # seconds; 15000 ms on the wire


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
            raise not_a_map("connectionDetails", raw)
        where = "connectionDetails."
        max_message_size = req_int(raw, "maxMessageSize", where)
        max_frame_size = req_int(raw, "maxFrameSize", where)
        gc_grace = req_int(raw, "objectsGCGracePeriod", where)
        return cls(
            client_id=req_str(raw, "clientId", where),
            connection_key=req_str(raw, "connectionKey", where),
            max_message_size=(
                DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
            ),
            max_frame_size=DEFAULT_MAX_FRAME_SIZE if max_frame_size is None else max_frame_size,
            max_inbound_rate=req_int(raw, "maxInboundRate", where),
            max_outbound_rate=req_int(raw, "maxOutboundRate", where),
            connection_state_ttl=_ms_to_s(
                req_int(raw, "connectionStateTtl", where), DEFAULT_CONNECTION_STATE_TTL
            ),
            max_idle_interval=_ms_to_s(
                req_int(raw, "maxIdleInterval", where), DEFAULT_MAX_IDLE_INTERVAL
            ),
            server_id=req_str(raw, "serverId", where),
            site_code=req_str(raw, "siteCode", where),
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
        map, non-string keys, a field of the wrong type). Only the keys the
        frame has are looked at: a frame carries a handful of the twenty fields.
        """
        if type(raw) is dict and raw.keys() <= _MESSAGE_KEYS:
            pm = _message_frame(raw)
            if pm is not None:
                return pm
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise not_a_map("protocol message", raw)
        # A frame without "action" reads as HEARTBEAT (0): encoders that omit zero
        # values produce exactly that.
        pm = cls(Action.HEARTBEAT)
        fields = _FRAME_FIELDS
        for key, value in raw.items():
            if type(key) is not str:
                raise malformed("every key", "a string")
            if value is None:
                continue  # null means absent (RSF1)
            reader = fields.get(key)
            if reader is not None:  # unknown keys are ignored (RSF1)
                setattr(pm, reader[0], reader[1](value, key))
        pm.fill_defaults()
        return pm


# The keys of a MESSAGE frame as servers send it (the hot path of an inbound frame).
_MESSAGE_KEYS = frozenset(
    ("action", "id", "channel", "channelSerial", "connectionId", "timestamp", "messages")
)
_MESSAGE = Action.MESSAGE


def _message_frame(raw: dict[str, Any]) -> ProtocolMessage | None:
    """A MESSAGE frame of the usual shape (only :data:`_MESSAGE_KEYS`, each of its usual
    type or null), read without the generic loop of
    :meth:`ProtocolMessage.from_dict`; None for any other frame, which the generic
    reader then reads (or refuses), so both give the same result."""
    get = raw.get
    action, messages = get("action"), get("messages")
    if type(action) is not int or action != _MESSAGE or type(messages) is not list:
        return None
    frame_id, channel, serial = get("id"), get("channel"), get("channelSerial")
    connection_id, timestamp = get("connectionId"), get("timestamp")
    if not (
        (frame_id is None or type(frame_id) is str)
        and (channel is None or type(channel) is str)
        and (serial is None or type(serial) is str)
        and (connection_id is None or type(connection_id) is str)
        and (timestamp is None or type(timestamp) is int)
    ):
        return None
    read = Message.from_dict
    # Built slot by slot rather than through __init__ (keyword arguments cost more
    # than the stores); tests/protocol/test_message_frames.py checks every field.
    pm = ProtocolMessage.__new__(ProtocolMessage)
    pm.action = _MESSAGE
    pm.id = frame_id
    pm.channel = channel
    pm.channel_serial = serial
    pm.connection_id = connection_id
    pm.connection_key = None
    pm.connection_details = None
    pm.msg_serial = None
    pm.count = None
    pm.error = None
    pm.flags = 0
    pm.timestamp = timestamp
    pm.messages = [read(m) for m in messages]
    pm.presence = []
    pm.annotations = []
    pm.state = []
    pm.auth = None
    pm.params = None
    pm.res = None
    pm.fill_defaults()
    return pm


def _read_action(value: Any, where: str) -> Action | int:
    return action_from_wire(as_int(value, where))


def _read_messages(value: Any, where: str) -> list[Message]:
    return [Message.from_dict(m) for m in as_list(value, where)]


def _read_presence(value: Any, where: str) -> list[PresenceMessage]:
    return [PresenceMessage.from_dict(p) for p in as_list(value, where)]


def _read_error(value: Any, where: str) -> AblyException:
    return AblyException.from_dict(as_map(value, where))


def _read_details(value: Any, where: str) -> ConnectionDetails:
    return ConnectionDetails.from_dict(as_map(value, where))


def _read_auth(value: Any, where: str) -> dict[str, Any] | None:
    return opt_dict(as_map(value, where))


def _read_params(value: Any, where: str) -> dict[str, str]:
    return _string_map(as_map(value, where))


# Wire key -> (attribute, strict reader of a present value); see ProtocolMessage (TR4).
_FRAME_FIELDS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "action": ("action", _read_action),
    "id": ("id", as_str),
    "channel": ("channel", as_str),
    "channelSerial": ("channel_serial", as_str),
    "connectionId": ("connection_id", as_str),
    "connectionKey": ("connection_key", as_str),
    "connectionDetails": ("connection_details", _read_details),
    "msgSerial": ("msg_serial", as_int),
    "count": ("count", as_int),
    "error": ("error", _read_error),
    "flags": ("flags", as_int),
    "timestamp": ("timestamp", as_int),
    "messages": ("messages", _read_messages),
    "presence": ("presence", _read_presence),
    "annotations": ("annotations", as_dict_list),
    "state": ("state", as_dict_list),
    "auth": ("auth", _read_auth),
    "params": ("params", _read_params),
    "res": ("res", as_dict_list),
}


def _string_map(raw: Mapping[str, Any]) -> dict[str, str]:
    """Channel params (RTL4k): string keys; values are strings on the wire (stringify others)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if type(key) is not str:
            raise malformed("params keys", "strings")
        out[key] = value if type(value) is str else str(value)
    return out
