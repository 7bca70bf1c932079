"""The state machine of one realtime channel (RTL2-RTL5, RTL11-RTL17, RTP1, RTP5, RTP17).

:class:`ChannelCore` owns a channel's state, its attach/detach waiters, its
serials (RTL15), its granted params and modes (RTL4k1, RTL4m), its presence maps
and its channel-level presence queue (RTP16b). It is driven by
:class:`~ably_bridge.protocol.connection.ConnectionCore`, which routes frames to
it, tells it about connection state changes (RTL3) and sends what it asks for.

Its presence half - the presence maps, queued presence, PRESENCE and SYNC
frames, re-entries - is :class:`~.channel_presence.ChannelPresence`, which it
extends.

Every method returns a list of effects (see :mod:`.events`) and never reads a
clock: ``now`` comes in, :attr:`ChannelCore.deadline` goes out. Incoming
MESSAGE frames take a fast path (:meth:`ChannelCore.on_message`) that allocates
one effect and nothing else.
"""

from __future__ import annotations

import random
from typing import Literal

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action, ChannelMode, Flag, modes_from_flags
from ably_bridge.protocol.channel_presence import ChannelPresence, ReenterHandle
from ably_bridge.protocol.events import (
    ChannelEvent,
    ChannelState,
    ChannelStateChange,
    CompleteAttach,
    CompleteDetach,
    ConnectionState,
    DeliverMessages,
    Effect,
    EmitChannelState,
    Handle,
    SendFrame,
)
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.protocol.retry import RetryPolicy

__all__ = ["ChannelCore", "ReenterHandle", "connection_state_error"]

_CS = ChannelState
_ATTACHED = ChannelState.ATTACHED  # (an enum attribute costs a lookup: read once per frame)
_CONN = ConnectionState
_HAS_PRESENCE = int(Flag.HAS_PRESENCE)
_HAS_BACKLOG = int(Flag.HAS_BACKLOG)
_RESUMED = int(Flag.RESUMED)

# RTL4b: attach is refused while the connection is in one of these states.
_ATTACH_REFUSED = frozenset({_CONN.CLOSED, _CONN.CLOSING, _CONN.SUSPENDED, _CONN.FAILED})
# RTL3a/b: connection FAILED/CLOSED reach channels in these states.
_LIVE = frozenset({_CS.ATTACHING, _CS.ATTACHED, _CS.SUSPENDED, _CS.DETACHING})


def connection_state_error(state: ConnectionState) -> AblyException:
    """The error for an operation the connection's ``state`` does not allow (RTL4b, RTL6c4)."""
    if state == _CONN.SUSPENDED:
        return AblyException("connection is suspended", ErrorCode.CONNECTION_SUSPENDED, 400)
    if state in (_CONN.CLOSED, _CONN.CLOSING):
        return AblyException("connection is closed", ErrorCode.CONNECTION_CLOSED, 400)
    if state == _CONN.FAILED:
        return AblyException("connection has failed", ErrorCode.CONNECTION_FAILED, 400)
    return AblyException(f"connection is {state.value}", ErrorCode.CONNECTION_DISCONNECTED, 400)


def _channel_error(message: str, code: int = ErrorCode.CHANNEL_OPERATION_FAILED) -> AblyException:
    return AblyException(
        message, code, 400 if code != ErrorCode.CHANNEL_OPERATION_TIMED_OUT else 408
    )


class ChannelCore(ChannelPresence):
    """One channel's state machine; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        request_timeout: float,
        retry_policy: RetryPolicy,
        rng: random.Random,
        params: dict[str, str] | None = None,
        modes: int = 0,
        channel_serial: str | None = None,
    ) -> None:
        super().__init__(name)
        self.state = _CS.INITIALIZED
        self.error_reason: AblyException | None = None
        self.channel_serial = channel_serial  # RTL15b (RTN16j: may come from a recovery key)
        self.attach_serial: str | None = None  # RTL15c
        # The presence map has followed the channel without a gap since its last
        # ATTACHED: the channel has been ATTACHED, or ATTACHING again from there
        # (RTL3d after a resumed connection, RTL13a), ever since.
        self._presence_continuous = False
        self.params: dict[str, str] = {}  # granted (RTL4k1)
        self.modes = ChannelMode(0)  # granted (RTL4m)
        self.requested_params = dict(params or {})
        self.requested_modes = modes
        self.deadline: float | None = None
        self._request_timeout = request_timeout
        self._retry = retry_policy
        self._rng = rng
        self._retry_attempt = 0
        self._attach_waiters: list[Handle] = []
        self._detach_waiters: list[Handle] = []
        self._queued: Literal["attach", "detach"] | None = None  # RTL4h / RTL5i
        self._before_detach = _CS.ATTACHED  # RTL5f

    def __repr__(self) -> str:
        return f"ChannelCore({self.name!r}, state={self.state.value})"

    # -- user operations -----------------------------------------------------------
    def attach(self, handle: Handle, conn: ConnectionState, now: float) -> list[Effect]:
        """RTL4: attach, settling ``handle`` when ATTACHED or when the attempt fails."""
        if self.state == _CS.ATTACHED:
            return [CompleteAttach(handle, None)]  # RTL4a
        if conn in _ATTACH_REFUSED:
            return [CompleteAttach(handle, connection_state_error(conn))]  # RTL4b
        self._attach_waiters.append(handle)
        effects: list[Effect] = []
        if self.state == _CS.ATTACHING:
            if self._queued == "detach":  # a later attach cancels the queued detach
                self._queued = None
                self._finish_detach(effects, _channel_error("detach superseded by attach"))
            return effects  # RTL4h
        if self.state == _CS.DETACHING:
            self._queued = "attach"  # RTL4h: after the pending detach
            return effects
        if self.state == _CS.FAILED:
            self.error_reason = None  # RTL4g
        self._begin_attach(effects, conn, now, None)
        return effects

    def detach(self, handle: Handle, conn: ConnectionState, now: float) -> list[Effect]:
        """RTL5: detach, settling ``handle`` when DETACHED or when the attempt fails."""
        state = self.state
        if state in (_CS.INITIALIZED, _CS.DETACHED):
            return [CompleteDetach(handle, None)]  # RTL5a
        if state == _CS.FAILED:
            error = _channel_error(
                "cannot detach a failed channel",
                ErrorCode.CHANNEL_OPERATION_FAILED_INVALID_CHANNEL_STATE,
            )
            return [CompleteDetach(handle, error)]  # RTL5b
        self._detach_waiters.append(handle)
        effects: list[Effect] = []
        if state == _CS.DETACHING:
            if self._queued == "attach":
                self._queued = None
                self._finish_attach(effects, _channel_error("attach superseded by detach"))
            return effects  # RTL5i
        if state == _CS.ATTACHING and conn == _CONN.CONNECTED:
            self._queued = "detach"  # RTL5i: after the pending attach
            return effects
        if state == _CS.SUSPENDED or conn != _CONN.CONNECTED:
            self._set_state(effects, _CS.DETACHED)  # RTL5j, RTL5l
            return effects
        self._begin_detach(effects, now)  # RTL5d
        return effects

    def set_options(
        self,
        params: dict[str, str],
        modes: int,
        handle: Handle,
        conn: ConnectionState,
        now: float,
    ) -> list[Effect]:
        """RTL16: new params and modes for the next ATTACH.

        RTL16a: when they change on an ATTACHED or ATTACHING channel, a new
        ATTACH carrying them is sent (the channel stays in its state) and
        ``handle`` settles on the ATTACHED that answers it, or with the error
        that ends the attempt (DETACHED, SUSPENDED, FAILED, no answer in time).
        Otherwise ``handle`` settles at once.
        """
        changed = params != self.requested_params or modes != self.requested_modes
        self.requested_params = dict(params)
        self.requested_modes = modes
        if not changed or self.state not in (_CS.ATTACHED, _CS.ATTACHING):
            return [CompleteAttach(handle, None)]
        self._attach_waiters.append(handle)
        effects: list[Effect] = []
        if conn == _CONN.CONNECTED:
            self._send_attach(effects, now)
        # (not connected: the re-attach on CONNECTED (RTL3d) carries them)
        return effects

    def decode_failed(
        self, error: AblyException, serial: str | None, conn: ConnectionState, now: float
    ) -> list[Effect]:
        """RTL18: a delta on this ATTACHED channel could not be decoded.

        Without a decoder (40019) the channel fails. Otherwise (40018) it goes
        ATTACHING with the error (RTL18b) and re-attaches from ``serial``, the
        channelSerial of the last frame it decoded (RTL18c), so the server sends
        everything after it again; frames meanwhile are not delivered (RTL17).
        """
        effects: list[Effect] = []
        if self.state != _CS.ATTACHED:
            return effects
        if error.code == ErrorCode.MISSING_PLUGIN:
            self._set_state(effects, _CS.FAILED, error)
            return effects
        self.channel_serial = serial
        self._begin_attach(effects, conn, now, error)
        return effects

    # -- frames from the server ------------------------------------------------
    def on_message(self, pm: ProtocolMessage) -> DeliverMessages | None:
        """MESSAGE: note the serial (RTL15b); deliver only when ATTACHED (RTL17)."""
        if pm.channel_serial is not None:
            self.channel_serial = pm.channel_serial
        if self.state is _ATTACHED:
            return DeliverMessages(self.name, pm)
        return None

    def on_serial_only(self, pm: ProtocolMessage) -> None:
        """ANNOTATION / OBJECT: only the serial matters to this core (RTL15b)."""
        if pm.channel_serial is not None:
            self.channel_serial = pm.channel_serial

    def on_attached(self, pm: ProtocolMessage, now: float) -> list[Effect]:
        """ATTACHED: an attach confirmed, an UPDATE (RTL12), or a stray while detaching (RTL5k)."""
        effects: list[Effect] = []
        state = self.state
        if pm.channel_serial is not None:
            self.channel_serial = pm.channel_serial  # RTL15b
        if state in (_CS.DETACHING, _CS.DETACHED):
            self._begin_detach(effects, now)  # RTL5k
            return effects
        if state in (_CS.INITIALIZED, _CS.FAILED):
            return effects  # not asked for; the server will not deliver anyway
        flags = pm.flags
        resumed = bool(flags & _RESUMED)
        self.params = dict(pm.params) if pm.params else {}  # RTL4k1
        self.modes = modes_from_flags(flags)  # RTL4m
        if not resumed:
            self.attach_serial = pm.channel_serial  # RTL15c
        self.deadline = None
        self._retry_attempt = 0
        if state == _CS.ATTACHED:
            if not resumed:  # RTL12: loss of continuity
                self._emit(effects, _CS.ATTACHED, ChannelEvent.UPDATE, pm.error, False, False)
            self._finish_attach(effects, None)  # RTL16a: the options took effect
        else:
            self._set_state(
                effects,
                _CS.ATTACHED,
                pm.error,
                resumed=resumed,
                has_backlog=bool(flags & _HAS_BACKLOG),
            )
        continuity = state == _CS.ATTACHED and resumed
        has_presence = bool(flags & _HAS_PRESENCE)
        if not (resumed and self._presence_continuous):
            self._on_presence_attached(effects, has_presence, pm.timestamp)
        # else RESUMED: the map is whole and the server replays what it missed before
        # any SYNC (RTN15c6, RTL15b), LEAVEs included, so the map is left as it is (as
        # ably-js does for an extra ATTACHED): RTP19a's LEAVEs would make the server's
        # own LEAVE a no-op, and a sync started here would turn it into ABSENT with no
        # event (RTP2h2a) - lost to subscribers either way. A SYNC that follows starts
        # itself (RTP18a).
        self._presence_continuous = True
        self._reenter_due = not continuity  # RTP17i
        if self._queued == "detach":
            self._queued = None
            self._begin_detach(effects, now)  # RTL5i
        return effects

    def on_detached(self, pm: ProtocolMessage, conn: ConnectionState, now: float) -> list[Effect]:
        """DETACHED: a confirmed detach, or a server-initiated one (RTL13)."""
        effects: list[Effect] = []
        state = self.state
        if state == _CS.DETACHING:
            self._set_state(effects, _CS.DETACHED, pm.error)
            if self._queued == "attach":  # RTL4h
                self._queued = None
                self._begin_attach(effects, conn, now, None)
        elif state in (_CS.ATTACHED, _CS.SUSPENDED):
            self._begin_attach(effects, conn, now, pm.error)  # RTL13a
        elif state == _CS.ATTACHING:
            self._suspend(
                effects, pm.error or _channel_error("detached by the server"), now
            )  # RTL13b
        return effects

    def on_error(self, pm: ProtocolMessage) -> list[Effect]:
        """RTL14: a channel-scoped ERROR fails the channel."""
        effects: list[Effect] = []
        error = pm.error or _channel_error("channel error")
        self._set_state(effects, _CS.FAILED, error)
        return effects

    # -- timers ------------------------------------------------------------------------
    def tick(self, conn: ConnectionState, now: float) -> list[Effect]:
        """Fire the channel timer if due: attach timeout, detach timeout or reattach retry."""
        if self.deadline is None or now < self.deadline:
            return []
        self.deadline = None
        effects: list[Effect] = []
        if self.state == _CS.ATTACHING:  # RTL4f
            error = _channel_error("attach timed out", ErrorCode.CHANNEL_OPERATION_TIMED_OUT)
            self._suspend(effects, error, now)
        elif self.state == _CS.DETACHING:  # RTL5f: back to where we were
            error = _channel_error("detach timed out", ErrorCode.CHANNEL_OPERATION_TIMED_OUT)
            self._finish_detach(effects, error)
            self._set_state(effects, self._before_detach)
        elif self.state == _CS.SUSPENDED and conn == _CONN.CONNECTED:  # RTL13b
            self._begin_attach(effects, conn, now, None)
        elif self.state == _CS.ATTACHED:  # RTL16a: no answer to the new options' ATTACH
            error = _channel_error(
                "re-attach with new options timed out", ErrorCode.CHANNEL_OPERATION_TIMED_OUT
            )
            self._finish_attach(effects, error)
        return effects

    # -- connection state side effects (RTL3) --------------------------------------------
    def on_connected(self, now: float) -> list[Effect]:
        """RTL3d / RTN19b: reattach, or resend a pending DETACH."""
        effects: list[Effect] = []
        if self.state in (_CS.ATTACHING, _CS.ATTACHED, _CS.SUSPENDED):
            self._begin_attach(effects, _CONN.CONNECTED, now, None)
        elif self.state == _CS.DETACHING:
            self._send_detach(effects, now)
        return effects

    def on_disconnected(self) -> None:
        """RTL3e: no state change; timers stop (RTL13c) and restart on CONNECTED."""
        self.deadline = None

    def on_connection_suspended(self, reason: AblyException | None) -> list[Effect]:
        """RTL3c: ATTACHING/ATTACHED become SUSPENDED; a pending detach completes."""
        effects: list[Effect] = []
        self.deadline = None
        if self.state in (_CS.ATTACHING, _CS.ATTACHED):
            self._set_state(effects, _CS.SUSPENDED, reason)
        elif self.state == _CS.DETACHING:
            self._set_state(effects, _CS.DETACHED)
        return effects

    def on_connection_closed(self) -> list[Effect]:
        """RTL3b: live channels become DETACHED."""
        effects: list[Effect] = []
        self.deadline = None
        if self.state in _LIVE:
            self._set_state(effects, _CS.DETACHED)
        return effects

    def on_connection_failed(self, reason: AblyException | None) -> list[Effect]:
        """RTL3a: live channels become FAILED with the connection's reason."""
        effects: list[Effect] = []
        self.deadline = None
        if self.state in _LIVE:
            self._set_state(effects, _CS.FAILED, reason)
        return effects

    def reset(self) -> list[Effect]:
        """RTN11d: back to INITIALIZED with no error, for a connect() after CLOSED/FAILED."""
        effects: list[Effect] = []
        self.deadline = None
        if self.state != _CS.INITIALIZED:
            self._set_state(effects, _CS.INITIALIZED)
        self.error_reason = None
        return effects

    # -- internals ----------------------------------------------------------------------
    def _begin_attach(
        self, effects: list[Effect], conn: ConnectionState, now: float, reason: AblyException | None
    ) -> None:
        if self.state != _CS.ATTACHING:
            self._set_state(effects, _CS.ATTACHING, reason)
        if conn == _CONN.CONNECTED:
            self._send_attach(effects, now)  # RTL4c
        else:
            self.deadline = None  # RTL4i: sent once CONNECTED (RTL3d)

    def _send_attach(self, effects: list[Effect], now: float) -> None:
        frame = ProtocolMessage(
            Action.ATTACH,
            channel=self.name,
            channel_serial=self.channel_serial,  # RTL4c1
            params=dict(self.requested_params) if self.requested_params else None,  # RTL4k
            flags=self.requested_modes,  # RTL4l
        )
        effects.append(SendFrame(frame))
        self.deadline = now + self._request_timeout  # RTL4f

    def _begin_detach(self, effects: list[Effect], now: float) -> None:
        if self.state not in (_CS.DETACHING, _CS.DETACHED):
            self._before_detach = self.state
        elif self.state == _CS.DETACHED:
            self._before_detach = _CS.DETACHED
        if self.state != _CS.DETACHING:
            self._set_state(effects, _CS.DETACHING)
        self._send_detach(effects, now)

    def _send_detach(self, effects: list[Effect], now: float) -> None:
        effects.append(SendFrame(ProtocolMessage(Action.DETACH, channel=self.name)))
        self.deadline = now + self._request_timeout  # RTL5f

    def _suspend(self, effects: list[Effect], reason: AblyException, now: float) -> None:
        """RTL13b: SUSPENDED, with a reattach scheduled per RTB1."""
        self._set_state(effects, _CS.SUSPENDED, reason)
        self._retry_attempt += 1
        self.deadline = now + self._retry.delay(self._retry_attempt, self._rng.random())

    def _finish_attach(self, effects: list[Effect], error: AblyException | None) -> None:
        waiters, self._attach_waiters = self._attach_waiters, []
        effects.extend(CompleteAttach(handle, error) for handle in waiters)

    def _finish_detach(self, effects: list[Effect], error: AblyException | None) -> None:
        waiters, self._detach_waiters = self._detach_waiters, []
        effects.extend(CompleteDetach(handle, error) for handle in waiters)

    def _set_state(
        self,
        effects: list[Effect],
        state: ChannelState,
        reason: AblyException | None = None,
        *,
        resumed: bool = False,
        has_backlog: bool = False,
    ) -> None:
        """Enter ``state``, settle the waiters it decides, and emit the change (RTL2a)."""
        previous = self.state
        if previous == state:
            return  # RTL2g: never a state event equal to the current state
        self.state = state
        if state not in (_CS.ATTACHING, _CS.ATTACHED):
            self._presence_continuous = False  # what the map missed is not replayed
        if state in (_CS.FAILED, _CS.SUSPENDED) or reason is not None:
            self.error_reason = reason
        elif state == _CS.ATTACHED:
            self.error_reason = None  # RTL4c: a successful attach clears errorReason
        self._emit(effects, previous, ChannelEvent(state.value), reason, resumed, has_backlog)
        self._settle_for(effects, state, reason)

    def _settle_for(
        self, effects: list[Effect], state: ChannelState, reason: AblyException | None
    ) -> None:
        if state == _CS.ATTACHED:
            self._finish_attach(effects, None)
        elif state == _CS.DETACHED:
            self.channel_serial = None  # RTL15b2
            self.presence.clear()  # RTP5a: no LEAVE events
            self.local_presence.clear()
            self.deadline = None
            self._finish_detach(effects, None)
            if self._queued != "attach":
                self._finish_attach(effects, reason or _channel_error("channel detached"))
            self._fail_presence_queue(effects, reason or _channel_error("channel detached"))
        elif state == _CS.SUSPENDED:
            error = reason or _channel_error("channel suspended")
            self._finish_attach(effects, error)  # RTL4d
            self._fail_presence_queue(effects, error)  # RTL11, RTP5f keeps the map
        elif state == _CS.FAILED:
            error = reason or _channel_error("channel failed")
            self.channel_serial = None  # RTL15b2
            self.presence.clear()  # RTP5a
            self.local_presence.clear()
            self.deadline = None
            self._queued = None
            self._finish_attach(effects, error)
            self._finish_detach(effects, error)
            self._fail_presence_queue(effects, error)
        elif state == _CS.INITIALIZED:
            self.channel_serial = None
            self.attach_serial = None
            self.presence.clear()
            self.local_presence.clear()
            self._queued = None
            error = _channel_error("channel reset")
            self._finish_attach(effects, error)
            self._finish_detach(effects, error)
            self._fail_presence_queue(effects, error)

    def _emit(
        self,
        effects: list[Effect],
        previous: ChannelState,
        event: ChannelEvent,
        reason: AblyException | None,
        resumed: bool,
        has_backlog: bool,
    ) -> None:
        change = ChannelStateChange(previous, self.state, event, reason, resumed, has_backlog)
        effects.append(EmitChannelState(self.name, change))
