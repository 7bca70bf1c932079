"""The protocol vocabulary as plain ints: actions, flags, channel modes, presence actions.

The values (ably-protocol.md 1.4, 1.5, 4.1; spec TR2, TR3, TP2) come from
:mod:`ably_bridge.protocol.actions`, the one place the package defines them;
this module re-exports them as ``int`` constants because the fan-out hot path
compares and packs them per frame, and enum members are slower at both. It
also holds the capability-operation to channel-mode mapping (TB2d, RTL4m).
"""

from __future__ import annotations

from ably_bridge.protocol.actions import Action, Flag, PresenceAction

# -- actions (TR2) ---------------------------------------------------------
HEARTBEAT = Action.HEARTBEAT.value
ACK = Action.ACK.value
NACK = Action.NACK.value
CONNECT = Action.CONNECT.value
CONNECTED = Action.CONNECTED.value
DISCONNECT = Action.DISCONNECT.value
DISCONNECTED = Action.DISCONNECTED.value
CLOSE = Action.CLOSE.value
CLOSED = Action.CLOSED.value
ERROR = Action.ERROR.value
ATTACH = Action.ATTACH.value
ATTACHED = Action.ATTACHED.value
DETACH = Action.DETACH.value
DETACHED = Action.DETACHED.value
PRESENCE = Action.PRESENCE.value
MESSAGE = Action.MESSAGE.value
SYNC = Action.SYNC.value
AUTH = Action.AUTH.value
ANNOTATION = Action.ANNOTATION.value

# -- flags (TR3) ------------------------------------------------------------
HAS_PRESENCE = Flag.HAS_PRESENCE.value
HAS_BACKLOG = Flag.HAS_BACKLOG.value
RESUMED = Flag.RESUMED.value
TRANSIENT = Flag.TRANSIENT.value
ATTACH_RESUME = Flag.ATTACH_RESUME.value
HAS_OBJECTS = Flag.HAS_OBJECTS.value
MODE_PRESENCE = Flag.PRESENCE.value
MODE_PUBLISH = Flag.PUBLISH.value
MODE_SUBSCRIBE = Flag.SUBSCRIBE.value
MODE_PRESENCE_SUBSCRIBE = Flag.PRESENCE_SUBSCRIBE.value
MODE_ANNOTATION_PUBLISH = Flag.ANNOTATION_PUBLISH.value
MODE_ANNOTATION_SUBSCRIBE = Flag.ANNOTATION_SUBSCRIBE.value
MODE_OBJECT_SUBSCRIBE = Flag.OBJECT_SUBSCRIBE.value
MODE_OBJECT_PUBLISH = Flag.OBJECT_PUBLISH.value

ALL_MODES = (
    MODE_PRESENCE
    | MODE_PUBLISH
    | MODE_SUBSCRIBE
    | MODE_PRESENCE_SUBSCRIBE
    | MODE_ANNOTATION_PUBLISH
    | MODE_ANNOTATION_SUBSCRIBE
    | MODE_OBJECT_SUBSCRIBE
    | MODE_OBJECT_PUBLISH
)
# Modes granted when ATTACH names none (ably-protocol.md 3.3).
DEFAULT_MODES = (
    MODE_SUBSCRIBE
    | MODE_PUBLISH
    | MODE_PRESENCE
    | MODE_PRESENCE_SUBSCRIBE
    | MODE_ANNOTATION_PUBLISH
)

# Which channel modes each capability operation makes grantable (3.3).
OPERATION_MODES: dict[str, int] = {
    "subscribe": MODE_SUBSCRIBE | MODE_PRESENCE_SUBSCRIBE | MODE_OBJECT_SUBSCRIBE,
    "publish": MODE_PUBLISH,
    "presence": MODE_PRESENCE,
    "annotation-publish": MODE_ANNOTATION_PUBLISH,
    "annotation-subscribe": MODE_ANNOTATION_SUBSCRIBE,
    "object-subscribe": MODE_OBJECT_SUBSCRIBE,
    "object-publish": MODE_OBJECT_PUBLISH,
}

# -- presence actions (TP2) -------------------------------------------------
P_ABSENT = PresenceAction.ABSENT.value
P_PRESENT = PresenceAction.PRESENT.value
P_ENTER = PresenceAction.ENTER.value
P_LEAVE = PresenceAction.LEAVE.value
P_UPDATE = PresenceAction.UPDATE.value
