"""A scripted harness for the sans-I/O realtime core: explicit ``now``, recorded effects."""

from __future__ import annotations

import random
from typing import Any, TypeVar

from ably_bridge.errors import AblyException
from ably_bridge.options import ClientOptions
from ably_bridge.protocol.actions import Action, Flag
from ably_bridge.protocol.connection import ConnectionCore
from ably_bridge.protocol.events import (
    ChannelStateChange,
    CompleteAttach,
    CompleteDetach,
    CompletePublish,
    ConnectionStateChange,
    Effect,
    EmitChannelState,
    EmitConnectionState,
    OpenTransport,
    SendFrame,
)
from ably_bridge.protocol.models import ConnectionDetails, ProtocolMessage

KEY = "appId.keyId:keySecret"
T = TypeVar("T")


class FixedRandom(random.Random):
    """``random()`` always answers ``value`` (1.0 => jitter factor 1.0); shuffle stays seeded."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value

    def getrandbits(self, k: int) -> int:  # keeps shuffle() on the seeded generator
        return super().getrandbits(k)


def options(**changes: Any) -> ClientOptions:
    base: dict[str, Any] = {"key": KEY, "fallback_hosts": []}
    base.update(changes)
    return ClientOptions(**base)


def connected_frame(
    connection_id: str = "conn-1",
    key: str = "key-1",
    *,
    error: AblyException | None = None,
    max_idle: float = 15.0,
    ttl: float = 120.0,
) -> ProtocolMessage:
    details = ConnectionDetails(
        connection_key=key, max_idle_interval=max_idle, connection_state_ttl=ttl
    )
    return ProtocolMessage(
        Action.CONNECTED,
        connection_id=connection_id,
        connection_key=key,
        connection_details=details,
        error=error,
    )


def err(code: int, status: int, message: str = "error") -> AblyException:
    return AblyException(message, code, status)


class Harness:
    """Drives a :class:`ConnectionCore` and keeps every effect it produced."""

    def __init__(self, opts: ClientOptions | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("rng", FixedRandom())
        self.core = ConnectionCore(opts or options(), **kwargs)
        self.now = 0.0
        self.effects: list[Effect] = []
        self.last: list[Effect] = []

    # -- driving -------------------------------------------------------------
    def run(self, effects: list[Effect]) -> list[Effect]:
        self.last = list(effects)
        self.effects.extend(effects)
        return self.last

    def advance(self, seconds: float) -> list[Effect]:
        self.now += seconds
        return self.run(self.core.tick(self.now))

    def connect(self) -> list[Effect]:
        return self.run(self.core.connect(self.now))

    def close(self) -> list[Effect]:
        return self.run(self.core.close(self.now))

    @property
    def tid(self) -> int:
        return self.core.transport_id

    def receive(self, pm: ProtocolMessage) -> list[Effect]:
        return self.run(self.core.frame_received(self.tid, pm, self.now))

    def drop(self, error: AblyException | None = None) -> list[Effect]:
        return self.run(self.core.transport_failed(self.tid, error, self.now))

    def establish(self, connection_id: str = "conn-1", key: str = "key-1", **kw: Any) -> None:
        """connect() and complete the handshake."""
        self.connect()
        self.receive(connected_frame(connection_id, key, **kw))

    def attach(self, name: str, handle: object = "att") -> list[Effect]:
        return self.run(self.core.attach(name, handle, self.now))

    def detach(self, name: str, handle: object = "det") -> list[Effect]:
        return self.run(self.core.detach(name, handle, self.now))

    def attached(self, name: str, flags: int = 0, **kw: Any) -> list[Effect]:
        return self.receive(ProtocolMessage(Action.ATTACHED, channel=name, flags=flags, **kw))

    def attach_now(self, name: str, flags: int = 0, **kw: Any) -> None:
        self.attach(name)
        self.attached(name, flags, **kw)

    # -- reading -------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.core.state.value

    def channel_state(self, name: str) -> str:
        return self.core.channels[name].state.value

    def sent(self, effects: list[Effect] | None = None) -> list[ProtocolMessage]:
        return [
            e.frame
            for e in (self.effects if effects is None else effects)
            if isinstance(e, SendFrame)
        ]

    def sent_actions(self, effects: list[Effect] | None = None) -> list[int]:
        return [f.action for f in self.sent(effects)]

    def opens(self, effects: list[Effect] | None = None) -> list[OpenTransport]:
        return of(OpenTransport, self.effects if effects is None else effects)

    def conn_changes(self, effects: list[Effect] | None = None) -> list[ConnectionStateChange]:
        src = self.effects if effects is None else effects
        return [e.change for e in src if isinstance(e, EmitConnectionState)]

    def conn_events(self, effects: list[Effect] | None = None) -> list[str]:
        return [c.event.value for c in self.conn_changes(effects)]

    def chan_changes(
        self, name: str, effects: list[Effect] | None = None
    ) -> list[ChannelStateChange]:
        src = self.effects if effects is None else effects
        return [e.change for e in src if isinstance(e, EmitChannelState) and e.channel == name]

    def chan_events(self, name: str, effects: list[Effect] | None = None) -> list[str]:
        return [c.event.value for c in self.chan_changes(name, effects)]

    def completions(self, effects: list[Effect] | None = None) -> list[Any]:
        src = self.effects if effects is None else effects
        kinds = (CompleteAttach, CompleteDetach, CompletePublish)
        return [e for e in src if isinstance(e, kinds)]


def of(kind: type[T], effects: list[Effect]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


HAS_PRESENCE = int(Flag.HAS_PRESENCE)
HAS_BACKLOG = int(Flag.HAS_BACKLOG)
RESUMED = int(Flag.RESUMED)
