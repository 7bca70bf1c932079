"""Protocol constants and error construction used by the emulator.

Owns the numeric action/flag/presence-action values of the realtime protocol
(ably-protocol.md 1.4, 1.5, 4.1; spec TR2, TR3, TP2) as private int constants,
the capability-operation to channel-mode mapping (TB2d, RTL4m) and
:func:`error`, which builds an :class:`AblyException` with the HTTP status Ably
pairs with each code (ably-protocol.md section 10).
"""

from __future__ import annotations

from ably_bridge.errors import AblyException

# -- actions (TR2) ---------------------------------------------------------
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

# -- flags (TR3) ------------------------------------------------------------
HAS_PRESENCE = 1 << 0
HAS_BACKLOG = 1 << 1
RESUMED = 1 << 2
TRANSIENT = 1 << 4
ATTACH_RESUME = 1 << 5
HAS_OBJECTS = 1 << 7
MODE_PRESENCE = 1 << 16
MODE_PUBLISH = 1 << 17
MODE_SUBSCRIBE = 1 << 18
MODE_PRESENCE_SUBSCRIBE = 1 << 19
MODE_ANNOTATION_PUBLISH = 1 << 21
MODE_ANNOTATION_SUBSCRIBE = 1 << 22
MODE_OBJECT_SUBSCRIBE = 1 << 24
MODE_OBJECT_PUBLISH = 1 << 25

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
P_ABSENT = 0
P_PRESENT = 1
P_ENTER = 2
P_LEAVE = 3
P_UPDATE = 4

# HTTP statuses that do not follow the "first three digits" rule.
_STATUS: dict[int, int] = {
    40009: 413,
    40171: 403,
    80002: 400,
    80006: 400,
    80008: 400,
    80016: 410,
    80017: 400,
    80018: 400,
    80019: 401,
    80022: 410,
    90001: 400,
    91000: 400,
    91005: 400,
}


def status_for(code: int) -> int:
    """The HTTP status Ably pairs with ``code``."""
    if code in _STATUS:
        return _STATUS[code]
    head = code // 100
    return head if 400 <= head <= 599 else 500


def error(code: int, message: str, status: int | None = None) -> AblyException:
    """An Ably error with the status that goes with ``code`` unless one is given."""
    return AblyException(message, code, status if status is not None else status_for(code))
