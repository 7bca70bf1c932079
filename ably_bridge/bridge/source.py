"""The seam between the daemon and Ably: where channel events come from.

This module owns the small interface the daemon is written against, so that
the daemon can be tested without sockets and the realtime client can change
underneath it:

* :class:`ChannelSource` - attach a channel with a set of
  :class:`SourceHandlers` (messages, presence, presence sync, state changes),
  detach it, report the connection state, close. Handlers may be called from
  any thread; the daemon only enqueues from them.
* :class:`HistorySource` - the messages of a channel after a checkpoint, up to
  an attach point (``untilAttach``), oldest first (see :mod:`.backfill`), and
  its presence events after a presence checkpoint (up to now), or
  :class:`PresenceHistoryUnavailable`.
* :class:`ChannelDirectory` - active channel names under a prefix (see
  :mod:`.discovery`).
* :class:`StateChange` - a channel state change as the daemon needs it
  (including the ``attach_serial`` of an ATTACHED without RESUMED).
* :class:`FakeSource` - an in-memory implementation of all three for unit
  tests: tests publish into it, drop continuity, fail channels, and so on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.secret import Secret
from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message, PresenceMessage

__all__ = [
    "ChannelDirectory",
    "ChannelSource",
    "FakeSource",
    "HistorySource",
    "PresenceHistoryUnavailable",
    "SourceHandlers",
    "StateChange",
    "after_position",
]

logger = logging.getLogger(__name__)

# Connection states the daemon reads (RTN4); a source reports one of these.
CONNECTION_STATES = (
    "initialized", "connecting", "connected", "disconnected", "suspended",
    "closing", "closed", "failed",
)  # fmt: skip
CHANNEL_STATES = (
    "initialized", "attaching", "attached", "detaching", "detached", "suspended", "failed",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StateChange:
    """A channel state change (TH1-TH6) plus the attach point of a fresh ATTACHED."""

    current: str
    previous: str
    event: str  # usually == current; "update" for an UPDATE event (RTL12)
    resumed: bool = False
    reason: AblyException | None = None
    attach_serial: str | None = None
    has_presence: bool | None = None  # None: unknown (presence sync reported separately)

    @property
    def continuity_lost(self) -> bool:
        """An ATTACHED or UPDATE without RESUMED: events may have been missed (RTL12, RTL15c)."""
        return self.current == "attached" and not self.resumed


@dataclass(frozen=True, slots=True)
class SourceHandlers:
    """Callbacks for one attachment of one channel. Each may run on any thread."""

    messages: Callable[[Sequence[Message]], None]
    presence: Callable[[Sequence[PresenceMessage]], None]
    presence_sync: Callable[[Sequence[PresenceMessage]], None]
    state: Callable[[StateChange], None]


class ChannelSource(Protocol):
    """Live channel events (implemented over the realtime client, or faked)."""

    def attach(
        self,
        channel: str,
        handlers: SourceHandlers,
        *,
        cipher_key: Secret | None = None,
        presence: bool = False,
    ) -> None:
        """Start delivering ``channel`` to ``handlers`` (asynchronously; never blocks long).

        Replaces the handlers of an earlier attach of the same channel. The
        ATTACHED state change carries the attach serial.
        """
        ...

    def detach(self, channel: str) -> None:
        """Stop delivering ``channel`` (no handler of it is called afterwards)."""
        ...

    def connection_state(self) -> str:
        """One of :data:`CONNECTION_STATES`."""
        ...

    def close(self) -> None:
        """Detach everything and close the connection; idempotent."""
        ...


class HistorySource(Protocol):
    """Stored messages of a channel (REST history)."""

    def since(
        self,
        channel: str,
        position: Position | None,
        until_serial: str | None,
    ) -> list[Message]:
        """Messages after ``position`` and at or before ``until_serial``, oldest first.

        Messages are returned as stored (payload still encoded): the dispatcher
        decodes them per route. ``until_serial=None`` means "up to now".
        """
        ...

    def presence_since(self, channel: str, position: Position | None) -> list[PresenceMessage]:
        """Presence events (enter/update/leave, as they happened) after ``position`` up
        to now, oldest first, still encoded; :class:`PresenceHistoryUnavailable` when
        the channel's presence history cannot be read."""
        ...


class PresenceHistoryUnavailable(Exception):
    """The channel's presence history cannot be read (not kept, or not allowed)."""


class ChannelDirectory(Protocol):
    """Active channels of the app (REST channel enumeration)."""

    def list_channels(self, prefix: str) -> list[str]:
        """Names of active channels starting with ``prefix``."""
        ...


def after_position(message: Message | PresenceMessage, position: Position) -> bool | None:
    """Whether ``message`` comes after ``position``: True, False, or None (cannot tell yet).

    Serials decide when both have one; a matching id means "not after"; else
    timestamps (an equal timestamp counts as after: de-duplication absorbs it).
    """
    if message.id is not None and message.id == position.id:
        return False
    serial = getattr(message, "serial", None)  # (presence messages have none)
    if serial and position.serial:
        return bool(serial > position.serial)
    ts = message.timestamp
    if ts is None:
        return None
    return ts >= position.timestamp


# ---------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------


@dataclass
class _FakeChannel:
    name: str
    history: list[Message] = field(default_factory=list)
    members: dict[str, PresenceMessage] = field(default_factory=dict)
    presence_history: list[PresenceMessage] = field(default_factory=list)
    handlers: SourceHandlers | None = None
    state: str = "initialized"
    attaches: int = 0
    cipher_key: Secret | None = None


class FakeSource:
    """An in-memory Ably for daemon tests: a channel source, history and directory.

    Everything happens synchronously on the caller's thread. ``publish`` stores a
    message (with a serial) and delivers it if the channel is attached;
    ``attach`` answers ATTACHED at once unless ``auto_attach`` is False (then
    call :meth:`complete_attach`). ``lose_continuity`` emits ATTACHED with
    ``resumed=False`` after storing messages the daemon never saw live.
    """

    def __init__(self, *, auto_attach: bool = True, time_ms: Callable[[], int] | None = None):
        self.auto_attach = auto_attach
        self._time_ms = time_ms or (lambda: 1_700_000_000_000)
        self._channels: dict[str, _FakeChannel] = {}
        self._counter = 0
        self._lock = threading.RLock()
        self.state = "connected"
        self.closed = False
        self.detached: list[str] = []
        self.history_calls: list[tuple[str, Position | None, str | None]] = []
        self.history_error: Exception | None = None
        self.presence_history_kept = True  # False: presence_since says unavailable
        self.presence_calls: list[tuple[str, Position | None]] = []
        self.active: set[str] = set()  # what list_channels reports (plus attached ones)

    # -- helpers for tests --------------------------------------------------------
    def channel(self, name: str) -> _FakeChannel:
        with self._lock:
            ch = self._channels.get(name)
            if ch is None:
                ch = self._channels[name] = _FakeChannel(name)
            return ch

    def attached(self) -> list[str]:
        with self._lock:
            return sorted(n for n, c in self._channels.items() if c.state == "attached")

    def _serial(self) -> str:
        self._counter += 1
        return f"{self._counter:016d}"

    def publish(
        self, channel: str, name: str | None = None, data: Any = None, *, deliver: bool = True,
        **fields: Any,
    ) -> Message:  # fmt: skip
        """Store a message; deliver it live when attached and ``deliver``."""
        with self._lock:
            ch = self.channel(channel)
            serial = self._serial()
            fields.setdefault("id", f"msg-{serial}")
            fields.setdefault("timestamp", self._time_ms())
            msg = Message(name, data, serial=serial, **fields)
            ch.history.append(msg)
            handlers = ch.handlers if ch.state == "attached" and deliver else None
        if handlers is not None:
            handlers.messages([msg])
        return msg

    def presence_event(
        self, channel: str, action: int, client_id: str, data: Any = None, *, deliver: bool = True
    ) -> PresenceMessage:
        """Store a presence event (in presence history) and deliver it
        live when attached and ``deliver``; the member map follows it."""
        with self._lock:
            ch = self.channel(channel)
            self._counter += 1
            msg = PresenceMessage(
                action, data=data, id=f"conn1:{self._counter}:0", client_id=client_id,
                connection_id="conn1", timestamp=self._time_ms(),
            )  # fmt: skip
            key = f"conn1:{client_id}"
            if action == 3:
                ch.members.pop(key, None)
            else:
                ch.members[key] = PresenceMessage(
                    1, data=data, id=msg.id, client_id=client_id, connection_id="conn1",
                    timestamp=msg.timestamp,
                )  # fmt: skip
            ch.presence_history.append(msg)
            handlers = ch.handlers if ch.state == "attached" and deliver else None
        if handlers is not None:
            handlers.presence([msg])
        return msg

    def _set_state(self, name: str, change: StateChange) -> None:
        with self._lock:
            ch = self.channel(name)
            ch.state = change.current
            handlers = ch.handlers
        if handlers is not None:
            handlers.state(change)

    def complete_attach(self, name: str, *, resumed: bool = False) -> None:
        """Answer a pending attach (or re-attach) with ATTACHED and the presence sync."""
        with self._lock:
            ch = self.channel(name)
            previous = ch.state
            serial = f"{self._counter:016d}"
            members = list(ch.members.values())
            handlers = ch.handlers
            event = "update" if previous == "attached" else "attached"
        self._set_state(
            name, StateChange("attached", previous, event, resumed, None, serial, bool(members))
        )
        if handlers is not None:
            handlers.presence_sync(members)

    def lose_continuity(self, name: str, missed: int = 0) -> list[Message]:
        """Store ``missed`` messages unseen, then emit UPDATE/ATTACHED with resumed=False."""
        sent = [self.publish(name, "missed", i, deliver=False) for i in range(missed)]
        self.complete_attach(name)
        return sent

    def suspend(self, name: str) -> None:
        with self._lock:
            previous = self.channel(name).state
        self._set_state(name, StateChange("suspended", previous, "suspended"))

    def fail(self, name: str, reason: AblyException | None = None) -> None:
        with self._lock:
            previous = self.channel(name).state
        self._set_state(name, StateChange("failed", previous, "failed", reason=reason))

    # -- ChannelSource -------------------------------------------------------------
    def attach(
        self,
        channel: str,
        handlers: SourceHandlers,
        *,
        cipher_key: Secret | None = None,
        presence: bool = False,
    ) -> None:
        with self._lock:
            ch = self.channel(channel)
            ch.handlers = handlers
            ch.cipher_key = cipher_key
            ch.attaches += 1
            previous = ch.state
            ch.state = "attaching"
        handlers.state(StateChange("attaching", previous, "attaching"))
        if self.auto_attach:
            self.complete_attach(channel)

    def detach(self, channel: str) -> None:
        with self._lock:
            ch = self.channel(channel)
            ch.handlers = None
            ch.state = "detached"
            self.detached.append(channel)

    def connection_state(self) -> str:
        return self.state

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.state = "closed"
            for ch in self._channels.values():
                ch.handlers = None
                ch.state = "detached"

    # -- HistorySource -------------------------------------------------------------
    def since(
        self, channel: str, position: Position | None, until_serial: str | None
    ) -> list[Message]:
        with self._lock:
            self.history_calls.append((channel, position, until_serial))
            if self.history_error is not None:
                raise self.history_error
            items = list(self.channel(channel).history)
        if until_serial is not None:
            items = [m for m in items if (m.serial or "") <= until_serial]
        if position is None:
            return items
        return [m for m in items if after_position(m, position) is not False]

    def presence_since(self, channel: str, position: Position | None) -> list[PresenceMessage]:
        with self._lock:
            self.presence_calls.append((channel, position))
            if not self.presence_history_kept:
                raise PresenceHistoryUnavailable(f"no presence history for {channel}")
            if self.history_error is not None:
                raise self.history_error
            items = list(self.channel(channel).presence_history)
        if position is None:
            return items
        return [m for m in items if after_position(m, position) is not False]

    # -- ChannelDirectory -------------------------------------------------------
    def list_channels(self, prefix: str) -> list[str]:
        with self._lock:
            names = self.active | {n for n, c in self._channels.items() if c.history}
        return sorted(n for n in names if n.startswith(prefix))

    def iter_history(self, channel: str) -> Iterator[Message]:
        with self._lock:
            return iter(list(self.channel(channel).history))
