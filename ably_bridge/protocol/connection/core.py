"""The realtime connection core, sans I/O (RTN1-RTN24, RTN7, RTN19, RTL3, RTL6c).

:class:`ConnectionCore` owns everything the loop thread of a realtime client
mutates: the connection state, connection id/key/details, the channels
(:class:`~ably_bridge.protocol.channel.ChannelCore`, keyed by name), the
publish queue (:class:`~ably_bridge.protocol.pending.PublishQueue`), pings, and
every timer.

It reads no clock and touches no socket. The driver calls an *input* method,
passing ``now`` (monotonic seconds), and performs the returned *effects* in
order (see :mod:`ably_bridge.protocol.events`); then it sleeps until
:meth:`ConnectionCore.next_deadline` or the next input, and calls
:meth:`ConnectionCore.tick`.

Inputs: :meth:`~ConnectionCore.connect`, :meth:`~ConnectionCore.close`,
:meth:`~ConnectionCore.transport_opened`, :meth:`~ConnectionCore.frame_received`,
:meth:`~ConnectionCore.transport_failed`, :meth:`~ConnectionCore.activity`,
:meth:`~ConnectionCore.tick`, :meth:`~ConnectionCore.token_obtained`,
:meth:`~ConnectionCore.token_failed`, :meth:`~ConnectionCore.connectivity_checked`,
:meth:`~ConnectionCore.publish`, :meth:`~ConnectionCore.publish_presence`,
:meth:`~ConnectionCore.attach`, :meth:`~ConnectionCore.detach`,
:meth:`~ConnectionCore.ping`.

This module holds the constructor, the transport inputs, the timers and the
connection-level frames (DISCONNECTED, CLOSED, ERROR, HEARTBEAT). The rest is
one layer per module, each building on the one below (see :mod:`.base`):
:mod:`.table` (the states and the one checked place they change),
:mod:`.publishing`, :mod:`.states`, :mod:`.connecting`, :mod:`.auth`,
:mod:`.routing`. Helpers outside the package: :mod:`ably_bridge.protocol.transport_params`
builds the hosts and websocket query of an attempt (RTN2, RTN17),
:mod:`ably_bridge.protocol.pings` tracks pings (RTN13).

Transports are numbered. Every transport input names the transport it comes
from, and input from a transport the core has already closed is ignored, so
a late frame from a dead socket cannot disturb its successor (RTN11b).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ably_bridge.errors import AblyException, ErrorCode, is_token_error
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.channel import connection_state_error
from ably_bridge.protocol.connection.base import NO_EFFECTS, simple_error
from ably_bridge.protocol.connection.routing import Routing
from ably_bridge.protocol.connection.table import Trigger
from ably_bridge.protocol.events import CompletePing, ConnectionState, Effect, Handle, SendFrame
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.protocol.transport_params import PROTOCOL_VERSION, qualifies_for_fallback

if TYPE_CHECKING:
    from ably_bridge.options import ClientOptions


__all__ = ["PROTOCOL_VERSION", "ConnectionCore"]

_S = ConnectionState


class ConnectionCore(Routing):
    """The realtime connection, its channels and its pending publishes; see the module docstring."""

    def __init__(
        self,
        options: ClientOptions,
        *,
        rng: random.Random | None = None,
        can_renew_token: bool | None = None,
        ping_frames_observable: bool = False,
    ) -> None:
        super().__init__(
            options,
            rng=rng,
            can_renew_token=can_renew_token,
            ping_frames_observable=ping_frames_observable,
        )
        self._recover = self._load_recovery_key(options.recover)  # RTN16f, RTN16j
        self._handlers: dict[int, Callable[[ProtocolMessage, float], Sequence[Effect]]] = {
            Action.HEARTBEAT: self._on_heartbeat,
            Action.ACK: self._on_ack,
            Action.NACK: self._on_nack,
            Action.CONNECTED: self._on_connected,
            Action.DISCONNECTED: self._on_disconnected,
            Action.CLOSED: self._on_closed,
            Action.ERROR: self._on_error,
            Action.ATTACHED: self._on_attached,
            Action.DETACHED: self._on_detached,
            Action.PRESENCE: self._on_presence,
            Action.SYNC: self._on_sync,
            Action.AUTH: self._on_auth,
            Action.ANNOTATION: self._on_serial_only,
            Action.OBJECT: self._on_serial_only,
        }

    def next_deadline(self) -> float | None:
        """The earliest monotonic time at which :meth:`tick` has something to do."""
        if self._channels_dirty:
            self._channels_dirty = False
            deadlines = [ch.deadline for ch in self.channels.values() if ch.deadline is not None]
            self._channel_deadline = min(deadlines) if deadlines else None
        candidates = [self._channel_deadline, *self._own_deadlines()]
        candidates.extend(self.pings.deadlines())
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _own_deadlines(self) -> tuple[float | None, ...]:
        state = self.state
        if state == _S.CONNECTED:
            idle = self._idle_interval
            return (None if idle is None else self._last_activity + idle,)
        if state == _S.DISCONNECTED:
            return (self._retry_deadline, self._suspend_at())
        if state == _S.SUSPENDED:
            return (self._retry_deadline,)
        return (self._attempt_deadline, self._close_deadline)

    # -- user inputs ------------------------------------------------------------------

    def close(self, now: float) -> Sequence[Effect]:
        """RTN12: close the connection."""
        state = self.state
        effects: list[Effect] = []
        if state == _S.CONNECTED:  # RTN12a
            effects.append(SendFrame(ProtocolMessage(Action.CLOSE)))
            self._set_state(effects, Trigger.CLOSE)
            self._close_deadline = now + self._timeout  # RTN12b
        elif state == _S.CONNECTING and self._awaiting == "transport":  # RTN12f
            self._set_state(effects, Trigger.CLOSE)
            self._close_deadline = now + self._timeout
        elif state in (_S.INITIALIZED, _S.CONNECTING, _S.DISCONNECTED, _S.SUSPENDED):
            self._closed(effects)  # RTN12d
        return effects

    def ping(self, handle: Handle, now: float) -> Sequence[Effect]:
        """RTN13: send a HEARTBEAT with a random id; settle on the echo or after the timeout."""
        state = self.state
        if state not in (_S.CONNECTED, _S.CONNECTING, _S.DISCONNECTED):
            return [CompletePing(handle, connection_state_error(state))]  # RTN13b
        ping_id = f"{self._rng.getrandbits(64):016x}"  # RTN13e
        deadline = now + self._timeout  # RTN13c
        return self.pings.start(ping_id, handle, now, deadline, send_now=state == _S.CONNECTED)

    # -- transport inputs -------------------------------------------------------------

    def transport_opened(self, transport_id: int, now: float) -> Sequence[Effect]:
        """The websocket handshake completed; CONNECTED is still to come (RTN6)."""
        if transport_id == self._transport_id and self._transport_live:
            self._last_activity = now
        return NO_EFFECTS

    def activity(self, transport_id: int, now: float) -> Sequence[Effect]:
        """A websocket ping (or any other sign of life) on the transport (RTN23b)."""
        if transport_id == self._transport_id:
            self._last_activity = now
        return NO_EFFECTS

    def transport_failed(
        self, transport_id: int, error: AblyException | None, now: float
    ) -> Sequence[Effect]:
        """The transport closed or could not be opened (RTN14d, RTN15a, RTN12c)."""
        if transport_id != self._transport_id or not self._transport_live:
            return NO_EFFECTS
        self._transport_live = False
        reason = error or simple_error("connection lost", ErrorCode.CONNECTION_DISCONNECTED, 500)
        effects: list[Effect] = []
        if self.state == _S.CONNECTING:
            self._attempt_failed(effects, reason, now, qualifies_for_fallback(error))
        elif self.state == _S.CONNECTED:
            self._connection_lost(effects, reason, now)  # RTN15a
        elif self.state == _S.CLOSING:
            self._closed(effects)  # RTN12c
        return effects

    # -- timers -----------------------------------------------------------------------

    def tick(self, now: float) -> Sequence[Effect]:
        """Fire every timer that is due at ``now``."""
        effects: list[Effect] = []
        self._tick_connection(effects, now)
        effects.extend(self.pings.tick(now))
        due = self._channel_deadline
        if self._channels_dirty or (due is not None and now >= due):
            self._channels_dirty = True
            state = self.state
            for ch in list(self.channels.values()):
                if ch.deadline is not None and now >= ch.deadline:
                    effects.extend(ch.tick(state, now))
        return effects

    def _tick_connection(self, effects: list[Effect], now: float) -> None:
        state = self.state
        if state == _S.CONNECTED:
            idle = self._idle_interval
            if idle is not None and now >= self._last_activity + idle:  # RTN23a
                error = simple_error(
                    f"no activity from the server for {idle:g}s",
                    ErrorCode.CONNECTION_DISCONNECTED,
                    500,
                )
                self._connection_lost(effects, error, now)
        elif state == _S.CONNECTING:
            if self._attempt_deadline is not None and now >= self._attempt_deadline:
                self._attempt_timed_out(effects, now)
        elif state == _S.CLOSING:
            deadline = self._close_deadline or self._attempt_deadline
            if deadline is not None and now >= deadline:
                self._closed(effects)  # RTN12b / RTN12f
        elif state == _S.DISCONNECTED:
            suspend_at = self._suspend_at()
            if suspend_at is not None and now >= suspend_at:
                self._suspend(effects, now)  # RTN14e
            elif self._retry_deadline is not None and now >= self._retry_deadline:
                self._start_sequence(effects, now)  # RTN14d
        elif (
            state == _S.SUSPENDED
            and self._retry_deadline is not None
            and now >= self._retry_deadline
        ):
            self._start_sequence(effects, now)  # RTN14f

    # -- connection frames (RTN13, RTN14, RTN15, RTN12) -------------------------------

    def _on_heartbeat(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        return self.pings.on_heartbeat(pm, now) if self.pings.pending else NO_EFFECTS

    def _on_disconnected(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        error = pm.error
        effects: list[Effect] = []
        if self.state == _S.CLOSING:
            # RTN12: the user asked to close; the server ending the connection closes it,
            # whatever the reason - even a token error does not renew and reconnect.
            self._closed(effects)
        elif error is not None and is_token_error(error.status_code, error.code):
            self._token_error(effects, error, now)  # RTN15h1/h2, RTN14b
        elif self.state == _S.CONNECTED:
            reason = error or simple_error(
                "disconnected by the server", ErrorCode.CONNECTION_DISCONNECTED, 500
            )
            self._connection_lost(effects, reason, now)  # RTN15h3
        elif self.state == _S.CONNECTING:
            self._close_transport(effects)
            qualifies = error is not None and 500 <= error.status_code <= 504  # RTN17f1
            self._attempt_failed(effects, error, now, qualifies)  # RTN14d
        return effects

    def _on_closed(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        effects: list[Effect] = []
        if self.state == _S.CLOSING:
            self._closed(effects)
        elif self.state == _S.CONNECTED:
            reason = pm.error or simple_error(
                "closed by the server", ErrorCode.CONNECTION_CLOSED, 500
            )
            self._connection_lost(effects, reason, now)
        return effects

    def _on_error(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        if pm.channel:
            ch = self.channels.get(pm.channel)
            self._channels_dirty = True
            return ch.on_error(pm) if ch is not None else NO_EFFECTS  # RTL14
        error = pm.error or simple_error("connection error", ErrorCode.CONNECTION_FAILED, 500)
        effects: list[Effect] = []
        if self.state in (_S.CONNECTING, _S.CONNECTED) and is_token_error(
            error.status_code, error.code
        ):
            self._token_error(effects, error, now)  # RTN14b, RTN15c5
        else:
            self._fail(effects, error)  # RTN14g, RTN15j, RTN15c4
        return effects
