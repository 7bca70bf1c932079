"""The vocabulary shared by the realtime cores and their driver: states, state changes, effects.

The sans-I/O cores (:mod:`.connection`, :mod:`.channel`) take inputs that carry
``now`` and answer with a list of *effects*: plain frozen records that tell the
driver what to do (send a frame, open or close a transport, fetch a token,
notify listeners, settle a caller's future). The driver performs them in order.

* States: :class:`ConnectionState` (RTN27/RTN4) and :class:`ChannelState` (RTL2),
  with string values as in the official ``ably`` package; the event enums add
  ``"update"`` (RTN4h, RTL2g).
* State changes: :class:`ConnectionStateChange` (TA2-TA5) and
  :class:`ChannelStateChange` (TH1-TH6). ``retry_in`` is in **seconds**.
* Effects: see :data:`Effect`. ``handle`` values are opaque tokens the driver
  passed in (typically a ``concurrent.futures.Future``); the cores never look
  inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

from ably_bridge.errors import AblyException

if TYPE_CHECKING:
    from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage

__all__ = [
    "ChannelEvent",
    "ChannelState",
    "ChannelStateChange",
    "CheckConnectivity",
    "CloseTransport",
    "CompleteAttach",
    "CompleteDetach",
    "CompletePing",
    "CompletePublish",
    "ConnectionEvent",
    "ConnectionState",
    "ConnectionStateChange",
    "DeliverMessages",
    "DeliverPresence",
    "DeliverRawPresence",
    "Effect",
    "EmitChannelState",
    "EmitConnectionState",
    "Handle",
    "OpenTransport",
    "PresenceSynced",
    "RequestToken",
    "SendFrame",
]

Handle: TypeAlias = object  # whatever the driver uses to find the caller again


class ConnectionState(StrEnum):
    """Connection states (RTN27)."""

    INITIALIZED = "initialized"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    SUSPENDED = "suspended"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class ConnectionEvent(StrEnum):
    """Connection events: every state plus ``update`` (RTN4, RTN4h)."""

    INITIALIZED = "initialized"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    SUSPENDED = "suspended"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"
    UPDATE = "update"


class ChannelState(StrEnum):
    """Channel states (RTL2b)."""

    INITIALIZED = "initialized"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    SUSPENDED = "suspended"
    FAILED = "failed"


class ChannelEvent(StrEnum):
    """Channel events: every state plus ``update`` (RTL2, RTL2g)."""

    INITIALIZED = "initialized"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    SUSPENDED = "suspended"
    FAILED = "failed"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class ConnectionStateChange:
    """TA2-TA5; ``retry_in`` is seconds until the next connection attempt, when one is planned."""

    previous: ConnectionState
    current: ConnectionState
    event: ConnectionEvent
    reason: AblyException | None = None
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelStateChange:
    """TH1-TH6: ``resumed`` is the RESUMED flag (RTL2f), ``has_backlog`` HAS_BACKLOG (RTL2i)."""

    previous: ChannelState
    current: ChannelState
    event: ChannelEvent
    reason: AblyException | None = None
    resumed: bool = False
    has_backlog: bool = False


# -- effects -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Write ``frame`` to the current transport."""

    frame: ProtocolMessage


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Open a websocket to ``host`` with query ``params`` (RTN2); report back with ``transport_id``.

    The driver closes any transport it still holds before opening this one.
    """

    transport_id: int
    host: str
    params: dict[str, str]

    def __repr__(self) -> str:
        # key / accessToken / resume / recover are secrets.
        shown = {k: v for k, v in self.params.items() if k in _PUBLIC_PARAMS}
        return (
            f"OpenTransport(transport_id={self.transport_id}, host={self.host!r}, params={shown})"
        )


_PUBLIC_PARAMS = frozenset({"format", "echo", "heartbeats", "v", "clientId"})


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Drop transport ``transport_id``; frames still arriving from it will be ignored."""

    transport_id: int


@dataclass(frozen=True, slots=True)
class CheckConnectivity:
    """RTN17j: GET the connectivity-check URL; answer with ``connectivity_checked(ok, now)``."""


@dataclass(frozen=True, slots=True)
class RequestToken:
    """Obtain a token through Auth and answer with ``token_obtained`` or ``token_failed``.

    ``force`` asks for a new token even if a cached one looks valid (after a token
    error, or a server AUTH request, RTN22); ``reason`` is the error that caused it.
    """

    force: bool
    reason: AblyException | None = None


@dataclass(frozen=True, slots=True)
class EmitConnectionState:
    """Tell connection listeners about a state change or UPDATE."""

    change: ConnectionStateChange


@dataclass(frozen=True, slots=True)
class EmitChannelState:
    """Tell the listeners of channel ``channel`` about a state change or UPDATE."""

    channel: str
    change: ChannelStateChange


@dataclass(slots=True)
class DeliverMessages:
    """A MESSAGE frame for an ATTACHED channel (RTL17); decode and hand ``messages`` to subscribers.

    The whole frame is passed on so the driver can fill the defaults of TM2a/c/f
    (``id``, ``connectionId``, ``timestamp``) without the core copying anything.
    Unlike the other effects not frozen, though nothing changes one: it is made
    for every inbound frame, and a frozen dataclass costs twice as much to build.
    """

    channel: str
    frame: ProtocolMessage

    @property
    def messages(self) -> list[Message]:
        return self.frame.messages


@dataclass(frozen=True, slots=True)
class DeliverPresence:
    """Presence events for subscribers, after the presence map filtered them (RTP2)."""

    channel: str
    messages: list[PresenceMessage]


@dataclass(frozen=True, slots=True)
class DeliverRawPresence:
    """A PRESENCE frame's messages as received, in order, with their ids: no map filtering.

    The raw presence feed (``presence.subscribe_raw``): what the server sent,
    whatever the presence map made of it - a LEAVE during a SYNC (stored as
    ABSENT without an event, RTP2h2a), an event older than the member's entry
    (discarded by RTP2a/b) - and never anything the client synthesized (RTP19a)
    or a SYNC's PRESENT entries (membership, not events).
    """

    channel: str
    messages: list[PresenceMessage]


@dataclass(frozen=True, slots=True)
class PresenceSynced:
    """The presence map of ``channel`` is in sync (RTP13, RTP18b, RTP1): ``get()`` may answer."""

    channel: str


@dataclass(frozen=True, slots=True)
class CompletePublish:
    """Settle a publish: ``error`` is ``None`` on ACK; ``serials`` per message from ``res``."""

    handle: Handle
    error: AblyException | None
    serials: list[str | None] | None = None


@dataclass(frozen=True, slots=True)
class CompleteAttach:
    """Settle an ``attach()`` (RTL4d): ``error`` is ``None`` once ATTACHED."""

    handle: Handle
    error: AblyException | None


@dataclass(frozen=True, slots=True)
class CompleteDetach:
    """Settle a ``detach()`` (RTL5e): ``error`` is ``None`` once DETACHED."""

    handle: Handle
    error: AblyException | None


@dataclass(frozen=True, slots=True)
class CompletePing:
    """Settle a ``ping()`` (RTN13): round-trip seconds, or the error."""

    handle: Handle
    error: AblyException | None
    round_trip: float | None = None


Effect: TypeAlias = (
    SendFrame
    | OpenTransport
    | CloseTransport
    | CheckConnectivity
    | RequestToken
    | EmitConnectionState
    | EmitChannelState
    | DeliverMessages
    | DeliverPresence
    | DeliverRawPresence
    | PresenceSynced
    | CompletePublish
    | CompleteAttach
    | CompleteDetach
    | CompletePing
)
