"""Wire enumerations: frame actions and flags, channel modes, presence and message actions.

This module owns the integer vocabulary of the realtime protocol (TR2, TR3, TB2d,
TP2, TM5) and the helpers that turn wire integers into enum members without
failing on values a newer server may send (RSF1: unknown enum values are
ignored, so an unknown action is kept as a plain ``int``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, IntFlag

from ably_bridge.errors import AblyException, ErrorCode

__all__ = [
    "MODE_MASK",
    "Action",
    "ChannelMode",
    "Flag",
    "MessageAction",
    "PresenceAction",
    "action_from_wire",
    "message_action_from_wire",
    "modes_from_flags",
    "modes_to_flags",
    "presence_action_from_wire",
]


class Action(IntEnum):
    """ProtocolMessage actions (TR2)."""

    HEARTBEAT = 0
    ACK = 1
    NACK = 2
    CONNECT = 3
    CONNECTED = 4
    DISCONNECT = 5
    DISCONNECTED = 6
    CLOSE = 7
    CLOSED = 8
    ERROR = 9
    ATTACH = 10
    ATTACHED = 11
    DETACH = 12
    DETACHED = 13
    PRESENCE = 14
    MESSAGE = 15
    SYNC = 16
    AUTH = 17
    ACTIVATE = 18
    OBJECT = 19
    OBJECT_SYNC = 20
    ANNOTATION = 21


class Flag(IntFlag):
    """ProtocolMessage ``flags`` bits (TR3); bits 16 and up are channel modes (TB2d)."""

    HAS_PRESENCE = 1 << 0
    HAS_BACKLOG = 1 << 1
    RESUMED = 1 << 2
    TRANSIENT = 1 << 4
    ATTACH_RESUME = 1 << 5  # deprecated since spec 6.1.0; tolerated, never sent
    HAS_OBJECTS = 1 << 7
    PRESENCE = 1 << 16
    PUBLISH = 1 << 17
    SUBSCRIBE = 1 << 18
    PRESENCE_SUBSCRIBE = 1 << 19
    ANNOTATION_PUBLISH = 1 << 21
    ANNOTATION_SUBSCRIBE = 1 << 22
    OBJECT_SUBSCRIBE = 1 << 24
    OBJECT_PUBLISH = 1 << 25


class ChannelMode(IntFlag):
    """Channel modes (TB2d): exactly the flags with bit >= 16, same values."""

    PRESENCE = Flag.PRESENCE.value
    PUBLISH = Flag.PUBLISH.value
    SUBSCRIBE = Flag.SUBSCRIBE.value
    PRESENCE_SUBSCRIBE = Flag.PRESENCE_SUBSCRIBE.value
    ANNOTATION_PUBLISH = Flag.ANNOTATION_PUBLISH.value
    ANNOTATION_SUBSCRIBE = Flag.ANNOTATION_SUBSCRIBE.value
    OBJECT_SUBSCRIBE = Flag.OBJECT_SUBSCRIBE.value
    OBJECT_PUBLISH = Flag.OBJECT_PUBLISH.value


MODE_MASK: int = 0
for _mode in ChannelMode:
    MODE_MASK |= _mode.value
del _mode

# Names accepted by modes_to_flags: member names, lower-cased, with "-" or "_"
# (capability operations use "annotation-publish"); MESSAGE_SUBSCRIBE is the
# spec's other name for SUBSCRIBE.
_MODE_NAMES: dict[str, ChannelMode] = {m.name.lower(): m for m in ChannelMode if m.name}
_MODE_NAMES["message_subscribe"] = ChannelMode.SUBSCRIBE


def modes_from_flags(flags: int) -> ChannelMode:
    """The channel modes carried in an ATTACHED ``flags`` value (RTL4m)."""
    return ChannelMode(flags & MODE_MASK)


def modes_to_flags(modes: Iterable[ChannelMode | str]) -> int:
    """OR together modes given as members or names ("subscribe", "PRESENCE-SUBSCRIBE") (RTL4l).

    Raises :class:`AblyException` 40000 for a name that is not a channel mode.
    """
    flags = 0
    for mode in modes:
        if isinstance(mode, str):
            found = _MODE_NAMES.get(mode.strip().lower().replace("-", "_"))
            if found is None:
                raise AblyException(f"unknown channel mode {mode!r}", ErrorCode.BAD_REQUEST, 400)
            flags |= found.value
        else:
            flags |= int(mode) & MODE_MASK
    return flags


class PresenceAction(IntEnum):
    """PresenceMessage actions (TP2)."""

    ABSENT = 0
    PRESENT = 1
    ENTER = 2
    LEAVE = 3
    UPDATE = 4


class MessageAction(IntEnum):
    """Message actions (TM5, protocol v4+)."""

    MESSAGE_CREATE = 0
    MESSAGE_UPDATE = 1
    MESSAGE_DELETE = 2
    META = 3
    MESSAGE_SUMMARY = 4
    MESSAGE_APPEND = 5


_ACTIONS: dict[int, Action] = {a.value: a for a in Action}
_PRESENCE_ACTIONS: dict[int, PresenceAction] = {a.value: a for a in PresenceAction}
_MESSAGE_ACTIONS: dict[int, MessageAction] = {a.value: a for a in MessageAction}


# RSF1/RTF1: an action this library does not know stays a plain int, so a frame
# from a newer server is still delivered. Dict lookups keep this cheap.
def action_from_wire(value: int) -> Action | int:
    """``Action`` member for a wire integer, or the integer itself when unknown."""
    return _ACTIONS.get(value, value)


def presence_action_from_wire(value: int) -> PresenceAction | int:
    """``PresenceAction`` member for a wire integer, or the integer itself when unknown."""
    return _PRESENCE_ACTIONS.get(value, value)


def message_action_from_wire(value: int) -> MessageAction | int:
    """``MessageAction`` member for a wire integer, or the integer itself when unknown."""
    return _MESSAGE_ACTIONS.get(value, value)
