"""The realtime connection state machine, sans I/O (RTN1-RTN24, RTN7, RTN19, RTL3, RTL6c).

:class:`ConnectionCore` owns everything the loop thread of a realtime client
mutates: the connection state, connection id/key/details, the channels
(:class:`~.channel.ChannelCore`, keyed by name), the publish queue
(:class:`~.pending.PublishQueue`), pings, and every timer.

It reads no clock and touches no socket. The driver calls an *input* method,
passing ``now`` (monotonic seconds), and performs the returned *effects* in
order (see :mod:`.events`); then it sleeps until :meth:`ConnectionCore.next_deadline`
or the next input, and calls :meth:`ConnectionCore.tick`.

Inputs: :meth:`connect`, :meth:`close`, :meth:`transport_opened`,
:meth:`frame_received`, :meth:`transport_failed`, :meth:`activity`,
:meth:`tick`, :meth:`token_obtained`, :meth:`token_failed`,
:meth:`connectivity_checked`, :meth:`publish`, :meth:`publish_presence`,
:meth:`attach`, :meth:`detach`, :meth:`ping`.

Split out: :mod:`.transport_params` builds the hosts and websocket query of an
attempt (RTN2, RTN17), :mod:`.pings` tracks pings (RTN13).

Transports are numbered. Every transport input names the transport it comes
from, and input from a transport the core has already closed is ignored, so
a late frame from a dead socket cannot disturb its successor (RTN11b).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from ably_bridge.errors import AblyException, ErrorCode, is_token_error
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.channel import ChannelCore, ReenterHandle, connection_state_error
from ably_bridge.protocol.connection.table import ConnectionStateMachine, Trigger
from ably_bridge.protocol.events import (
    ChannelState,
    CheckConnectivity,
    CloseTransport,
    CompletePing,
    CompletePublish,
    ConnectionEvent,
    ConnectionState,
    ConnectionStateChange,
    Effect,
    EmitConnectionState,
    Handle,
    OpenTransport,
    RequestToken,
    SendFrame,
)
from ably_bridge.protocol.models import ConnectionDetails, Message, PresenceMessage, ProtocolMessage
from ably_bridge.protocol.pending import PendingPublish, PublishQueue
from ably_bridge.protocol.pings import PingTracker
from ably_bridge.protocol.reconnect import ReconnectBackoff
from ably_bridge.protocol.recovery import RecoveryKeyContext, decode_recovery_key
from ably_bridge.protocol.retry import RetryPolicy
from ably_bridge.protocol.transport_params import (
    PROTOCOL_VERSION,
    connection_hosts,
    is_loopback_host,
    qualifies_for_fallback,
    websocket_params,
)

if TYPE_CHECKING:
    from ably_bridge.options import ClientOptions

__all__ = ["PROTOCOL_VERSION", "ConnectionCore"]


_S = ConnectionState
_NONE: tuple[Effect, ...] = ()  # what an input with no effect returns
_INACTIVE = frozenset({_S.CLOSED, _S.CLOSING, _S.FAILED})
_CHANNEL_SEND_BLOCKED = frozenset({ChannelState.SUSPENDED, ChannelState.FAILED})
Awaiting = Literal["token", "transport", "connectivity"] | None


def _error(message: str, code: int, status: int) -> AblyException:
    return AblyException(message, code, status)


class ConnectionCore:
    """The realtime connection, its channels and its pending publishes; see the module docstring."""

    def __init__(
        self,
        options: ClientOptions,
        *,
        rng: random.Random | None = None,
        can_renew_token: bool | None = None,
        ping_frames_observable: bool = False,
    ) -> None:
        self.options = options
        self._machine = ConnectionStateMachine()  # the state; changed only by Trigger moves
        self.error_reason: AblyException | None = None
        self.details: ConnectionDetails | None = None
        self.channels: dict[str, ChannelCore] = {}
        self.queue = PublishQueue()
        self.host: str | None = None  # the host of the current transport (RTN17e)
        self._rng = rng or random.Random()
        self._connection_id: str | None = None
        self._connection_key: str | None = None
        self._token_auth = options.uses_token_auth or options.key is None
        self._token: str | None = options.token or (
            options.token_details.token if options.token_details is not None else None
        )
        if can_renew_token is None:
            can_renew_token = any(
                x is not None for x in (options.key, options.auth_callback, options.auth_url)
            )
        self._renewable = can_renew_token
        self._heartbeats = not ping_frames_observable  # RTN23b
        retry = options.disconnected_retry_timeout
        self._backoff = ReconnectBackoff(RetryPolicy(retry), stable_after=retry)  # RTN15a, RTB1
        self._channel_retry = RetryPolicy(options.channel_retry_timeout)
        self._timeout = options.realtime_request_timeout
        # transport and attempt bookkeeping
        self._transport_id = 0
        self._transport_live = False
        self._awaiting: Awaiting = None
        self._hosts: list[str] = [options.realtime_host_name]
        self._host_index = 0
        self._connectivity_checked = False
        self._attempt_error: AblyException | None = None
        self._token_renewed = False  # RTN14b: one renewal per connection sequence
        self._token_refused = False  # the next sequence needs a new token, not the cached one
        self._suspended_mode = False
        # timers (monotonic seconds)
        self._attempt_deadline: float | None = None
        self._retry_deadline: float | None = None
        self._close_deadline: float | None = None
        self._disconnected_since: float | None = None
        self._last_activity = 0.0
        self._idle_interval: float | None = None
        self._channel_deadline: float | None = None
        self._channels_dirty = False
        self.pings = PingTracker()  # RTN13
        # RTN16f1: why the ``recover`` option was ignored, for the driver to log
        self.recover_error: AblyException | None = None
        self._recover = self._load_recovery_key(options.recover)
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

    # -- properties ----------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        """The connection state (RTN4); read-only, moved only through :mod:`.table`."""
        return self._machine.state

    @property
    def id(self) -> str | None:
        """Connection id; ``None`` until connected and in CLOSED/CLOSING/FAILED (RTN8)."""
        return None if self.state in _INACTIVE else self._connection_id

    @property
    def key(self) -> str | None:
        """Connection key; ``None`` until connected and in CLOSED/CLOSING/FAILED (RTN9)."""
        return None if self.state in _INACTIVE else self._connection_key

    @property
    def msg_serial(self) -> int:
        return self.queue.next_serial

    def recovery_key(self) -> str | None:
        """RTN16g: the recovery key, or ``None`` when inactive or never connected (RTN16g2)."""
        if self.state in _INACTIVE or self.state == _S.SUSPENDED or not self._connection_key:
            return None
        serials = self.channel_serials()
        return RecoveryKeyContext(self._connection_key, self.queue.next_serial, serials).encode()

    def channel_serials(self) -> dict[str, str]:
        """The channelSerial of each ATTACHED channel that has one (RTN16g)."""
        return {
            name: ch.channel_serial
            for name, ch in self.channels.items()
            if ch.state == ChannelState.ATTACHED and ch.channel_serial is not None
        }

    def channel(
        self, name: str, *, params: dict[str, str] | None = None, modes: int = 0
    ) -> ChannelCore:
        """The channel called ``name``, created on first use (RTS3a)."""
        ch = self.channels.get(name)
        if ch is None:
            ch = ChannelCore(
                name,
                request_timeout=self._timeout,
                retry_policy=self._channel_retry,
                rng=self._rng,
                params=params,
                modes=modes,
            )
            self.channels[name] = ch
        return ch

    def release(self, name: str) -> None:
        """Forget a channel (RTS4a; the facade detaches it first)."""
        self.channels.pop(name, None)
        self._channels_dirty = True

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

    # -- user inputs -----------------------------------------------------------------------
    def connect(self, now: float) -> Sequence[Effect]:
        """RTN11: start connecting (no-op while CONNECTING or CONNECTED, RTN11e)."""
        state = self.state
        if state in (_S.CONNECTING, _S.CONNECTED):
            return _NONE
        effects: list[Effect] = []
        if state == _S.CLOSING:  # RTN11b: abandon the old transport, channels DETACHED first
            self._close_transport(effects)
            self._close_deadline = None
            self._each_channel(effects, lambda ch: ch.on_connection_closed())
        if state in (_S.CLOSING, _S.CLOSED, _S.FAILED):
            self._reset(effects)  # RTN11d
        if self._disconnected_since is None:
            self._disconnected_since = now
        self._start_sequence(effects, now)  # RTN11c: skips any wait
        return effects

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

    def attach(self, name: str, handle: Handle, now: float) -> Sequence[Effect]:
        """RTL4 for channel ``name`` (created if needed)."""
        self._channels_dirty = True
        return self.channel(name).attach(handle, self.state, now)

    def detach(self, name: str, handle: Handle, now: float) -> Sequence[Effect]:
        """RTL5 for channel ``name``."""
        self._channels_dirty = True
        return self.channel(name).detach(handle, self.state, now)

    def decode_failed(
        self, name: str, serial: str | None, error: AblyException, now: float
    ) -> Sequence[Effect]:
        """RTL18 for channel ``name``: a delta could not be decoded."""
        ch = self.channels.get(name)
        if ch is None:
            return []
        self._channels_dirty = True
        return ch.decode_failed(error, serial, self.state, now)

    def set_channel_options(
        self, name: str, params: dict[str, str], modes: int, handle: Handle, now: float
    ) -> Sequence[Effect]:
        """RTL16 for channel ``name``: new params/modes, re-attaching if they change (RTL16a)."""
        self._channels_dirty = True
        return self.channel(name).set_options(params, modes, handle, self.state, now)

    def publish(
        self,
        name: str,
        messages: list[Message],
        handle: Handle,
        now: float,
        params: dict[str, str] | None = None,
    ) -> Sequence[Effect]:
        """RTL6: publish ``messages`` (already encoded) as one ProtocolMessage (RTL6i)."""
        ch = self.channels.get(name)
        if ch is not None and ch.state in _CHANNEL_SEND_BLOCKED:  # RTL6c4
            return [CompletePublish(handle, self._channel_state_error(ch))]
        frame = ProtocolMessage(Action.MESSAGE, channel=name, messages=messages, params=params)
        return self._submit(PendingPublish(frame, handle))

    def publish_presence(
        self, name: str, message: PresenceMessage, handle: Handle, now: float
    ) -> Sequence[Effect]:
        """RTP16: send a presence action now, queue it on the channel, or refuse it.

        The facade performs the implicit attach of RTP8d before calling this.
        """
        ch = self.channel(name)
        entry = PendingPublish(
            ProtocolMessage(Action.PRESENCE, channel=name, presence=[message]), handle
        )
        if ch.state == ChannelState.ATTACHED:
            return self._submit(entry)  # RTP16a
        if self.options.queue_messages and ch.state in (
            ChannelState.ATTACHING,
            ChannelState.INITIALIZED,
        ):
            ch.presence_queue.append(entry)  # RTP16b
            return _NONE
        return [CompletePublish(handle, self._channel_state_error(ch))]  # RTP16c

    def ping(self, handle: Handle, now: float) -> Sequence[Effect]:
        """RTN13: send a HEARTBEAT with a random id; settle on the echo or after the timeout."""
        state = self.state
        if state not in (_S.CONNECTED, _S.CONNECTING, _S.DISCONNECTED):
            return [CompletePing(handle, connection_state_error(state))]  # RTN13b
        ping_id = f"{self._rng.getrandbits(64):016x}"  # RTN13e
        deadline = now + self._timeout  # RTN13c
        return self.pings.start(ping_id, handle, now, deadline, send_now=state == _S.CONNECTED)

    # -- auth inputs ------------------------------------------------------------------------
    def token_obtained(self, token: str, now: float) -> Sequence[Effect]:
        """A token from Auth: continue the attempt, or re-authenticate (RTN22, RTC8)."""
        self._token = token
        self._token_auth = True
        state = self.state
        effects: list[Effect] = []
        if state == _S.CONNECTING:
            self._open(effects, now)  # awaited token, or RTC8b: restart with the new token
        elif state == _S.CONNECTED:
            auth = {"accessToken": token}
            effects.append(SendFrame(ProtocolMessage(Action.AUTH, auth=auth)))  # RTC8a
        elif state in (_S.DISCONNECTED, _S.SUSPENDED, _S.CLOSED, _S.FAILED):
            return self.connect(now)  # RTC8c
        return effects

    def token_failed(self, error: AblyException, now: float) -> Sequence[Effect]:
        """Auth could not produce a token (RTN14b, RTN15h2, RSA4c, RSA4d)."""
        effects: list[Effect] = []
        if self.state == _S.CONNECTING and self._awaiting == "token":
            if error.status_code == 403:
                self._fail(effects, error)  # RSA4d
            else:
                self._disconnected(effects, error, now)  # RTN14b, RSA4c2
        elif self.state == _S.CONNECTED:
            if error.status_code == 403:
                self._fail(effects, error)  # RSA4d
            else:
                self.error_reason = error  # RSA4c3: stay CONNECTED
        return effects

    def connectivity_checked(self, ok: bool, now: float) -> Sequence[Effect]:
        """RTN17j: the answer to :class:`CheckConnectivity`."""
        if self.state != _S.CONNECTING or self._awaiting != "connectivity":
            return _NONE
        effects: list[Effect] = []
        if ok:
            self._connectivity_checked = True
            self._host_index += 1
            self._open(effects, now)
        else:
            self._disconnected(effects, self._attempt_error, now)
        return effects

    # -- transport inputs -------------------------------------------------------------------
    def transport_opened(self, transport_id: int, now: float) -> Sequence[Effect]:
        """The websocket handshake completed; CONNECTED is still to come (RTN6)."""
        if transport_id == self._transport_id and self._transport_live:
            self._last_activity = now
        return _NONE

    def activity(self, transport_id: int, now: float) -> Sequence[Effect]:
        """A websocket ping (or any other sign of life) on the transport (RTN23b)."""
        if transport_id == self._transport_id:
            self._last_activity = now
        return _NONE

    def frame_received(
        self, transport_id: int, pm: ProtocolMessage, now: float
    ) -> Sequence[Effect]:
        """One decoded ProtocolMessage from transport ``transport_id``."""
        if transport_id != self._transport_id or not self._transport_live:
            return _NONE  # from a transport we already dropped
        self._last_activity = now  # RTN23a: any inbound frame is activity
        if pm.action == Action.MESSAGE:  # the hot path
            ch = self.channels.get(pm.channel) if pm.channel is not None else None
            if ch is None:
                return _NONE
            delivery = ch.on_message(pm)
            return [delivery] if delivery is not None else _NONE
        handler = self._handlers.get(pm.action)
        if handler is None:
            return _NONE  # RSF1: unknown actions are ignored
        return handler(pm, now)

    def transport_failed(
        self, transport_id: int, error: AblyException | None, now: float
    ) -> Sequence[Effect]:
        """The transport closed or could not be opened (RTN14d, RTN15a, RTN12c)."""
        if transport_id != self._transport_id or not self._transport_live:
            return _NONE
        self._transport_live = False
        reason = error or _error("connection lost", ErrorCode.CONNECTION_DISCONNECTED, 500)
        effects: list[Effect] = []
        if self.state == _S.CONNECTING:
            self._attempt_failed(effects, reason, now, qualifies_for_fallback(error))
        elif self.state == _S.CONNECTED:
            self._connection_lost(effects, reason, now)  # RTN15a
        elif self.state == _S.CLOSING:
            self._closed(effects)  # RTN12c
        return effects

    # -- timers ---------------------------------------------------------------------------------
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
                error = _error(
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

    def _attempt_timed_out(self, effects: list[Effect], now: float) -> None:
        if self._awaiting == "token":
            error = _error("timeout obtaining a token", ErrorCode.TOKEN_REQUEST_FAILED, 401)
            self._disconnected(effects, error, now)  # RSA4c
        elif self._awaiting == "connectivity":
            self._disconnected(effects, self._attempt_error, now)
        else:
            self._close_transport(effects)
            error = _error("connection attempt timeout", ErrorCode.TIMEOUT_ERROR, 500)
            self._attempt_failed(effects, error, now, True)  # RTN14c

    # -- frames ------------------------------------------------------------------------------
    def _on_heartbeat(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        return self.pings.on_heartbeat(pm, now) if self.pings.pending else _NONE

    def _on_ack(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        done = self.queue.ack(pm.msg_serial or 0, pm.count or 0, pm.res)
        return self._publish_results(done)

    def _on_nack(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        done = self.queue.nack(pm.msg_serial or 0, pm.count or 0, pm.error)
        return self._publish_results(done)

    def _on_connected(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        state = self.state
        effects: list[Effect] = []
        if state == _S.CONNECTED:  # RTN24: details update only
            self._apply_details(pm)
            self._emit(effects, _S.CONNECTED, ConnectionEvent.UPDATE, pm.error)
        elif state == _S.CLOSING:  # RTN12f: connected after all; close it properly
            self._apply_details(pm)
            effects.append(SendFrame(ProtocolMessage(Action.CLOSE)))
            self._close_deadline = now + self._timeout
        elif state == _S.CONNECTING:
            self._became_connected(effects, pm, now)
        return effects

    def _became_connected(self, effects: list[Effect], pm: ProtocolMessage, now: float) -> None:
        attempted = self._connection_key is not None or self._recover is not None
        previous_id = self._connection_id
        self._apply_details(pm)
        resumed = (
            attempted
            and pm.error is None
            and (previous_id is None or pm.connection_id == previous_id)
        )  # RTN15c6 (RTN16l for recover, where the old id is unknown)
        # RTN19a: resend what awaits an ACK - same serials after a resume (RTN19a2),
        # renumbered from 0 after a failed one (RTN15c7).
        failed_resume = attempted and not resumed
        frames = self.queue.renumber() if failed_resume else self.queue.resend_frames()
        self._recover = None  # RTN16k: recover is sent once only
        self._awaiting = None
        self._attempt_deadline = None
        self._retry_deadline = None
        self._disconnected_since = None
        self._backoff.connected(now)
        self._token_renewed = False
        self._token_refused = False
        self._suspended_mode = False
        self._last_activity = now
        previous = self._machine.move(Trigger.CONNECTED)
        self.error_reason = pm.error
        self._channels_dirty = True
        for ch in self.channels.values():
            effects.extend(ch.on_connected(now))  # RTL3d, before the event (RTL3d1)
        self._emit(effects, previous, ConnectionEvent.CONNECTED, pm.error)
        effects.extend(SendFrame(frame) for frame in frames)
        self._flush_queue(effects)
        effects.extend(self.pings.send_deferred(now))

    def _apply_details(self, pm: ProtocolMessage) -> None:
        details = pm.connection_details
        if details is not None:
            self.details = details
        if pm.connection_id is not None:
            self._connection_id = pm.connection_id
        key = details.connection_key if details is not None else None
        self._connection_key = key or pm.connection_key or self._connection_key  # RTN15e
        interval = self.details.max_idle_interval if self.details is not None else 0.0
        self._idle_interval = interval + self._timeout if interval > 0 else None  # RTN23a

    def _on_disconnected(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        error = pm.error
        effects: list[Effect] = []
        if error is not None and is_token_error(error.status_code, error.code):
            self._token_error(effects, error, now)  # RTN15h1/h2, RTN14b
        elif self.state == _S.CONNECTED:
            reason = error or _error(
                "disconnected by the server", ErrorCode.CONNECTION_DISCONNECTED, 500
            )
            self._connection_lost(effects, reason, now)  # RTN15h3
        elif self.state == _S.CONNECTING:
            self._close_transport(effects)
            qualifies = error is not None and 500 <= error.status_code <= 504  # RTN17f1
            self._attempt_failed(effects, error, now, qualifies)  # RTN14d
        elif self.state == _S.CLOSING:
            self._closed(effects)
        return effects

    def _on_closed(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        effects: list[Effect] = []
        if self.state == _S.CLOSING:
            self._closed(effects)
        elif self.state == _S.CONNECTED:
            reason = pm.error or _error("closed by the server", ErrorCode.CONNECTION_CLOSED, 500)
            self._connection_lost(effects, reason, now)
        return effects

    def _on_error(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        if pm.channel:
            ch = self.channels.get(pm.channel)
            self._channels_dirty = True
            return ch.on_error(pm) if ch is not None else _NONE  # RTL14
        error = pm.error or _error("connection error", ErrorCode.CONNECTION_FAILED, 500)
        effects: list[Effect] = []
        if self.state in (_S.CONNECTING, _S.CONNECTED) and is_token_error(
            error.status_code, error.code
        ):
            self._token_error(effects, error, now)  # RTN14b, RTN15c5
        else:
            self._fail(effects, error)  # RTN14g, RTN15j, RTN15c4
        return effects

    def _on_attached(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return _NONE
        self._channels_dirty = True
        effects = ch.on_attached(pm, now)
        for entry in ch.take_outbound(self._connection_id):  # RTP5b, RTP17i
            effects.extend(self._submit(entry))
        return effects

    def _on_detached(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return _NONE
        self._channels_dirty = True
        return ch.on_detached(pm, self.state, now)

    def _on_presence(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        return ch.on_presence(pm, self._connection_id) if ch is not None else _NONE

    def _on_sync(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        return ch.on_sync(pm, self._connection_id) if ch is not None else _NONE

    def _on_serial_only(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        ch = self.channels.get(pm.channel or "")
        if ch is not None:
            ch.on_serial_only(pm)
        return _NONE

    def _on_auth(self, pm: ProtocolMessage, now: float) -> Sequence[Effect]:
        if self.state != _S.CONNECTED:
            return _NONE
        return [RequestToken(force=True)]  # RTN22

    # -- connection sequence -----------------------------------------------------------------
    def _start_sequence(self, effects: list[Effect], now: float) -> None:
        """A new connection sequence: primary host first (RTN17i), fallbacks shuffled."""
        self._hosts = connection_hosts(self.options, self._rng)
        self._host_index = 0
        self._connectivity_checked = False
        self._token_renewed = False
        self._retry_deadline = None
        self._set_state(effects, Trigger.ATTEMPT)
        self._attempt_deadline = now + self._timeout
        if self._token_auth and self._token is None:
            self._awaiting = "token"
            effects.append(RequestToken(force=self._token_refused))
        else:
            self._open(effects, now)

    def _open(self, effects: list[Effect], now: float) -> None:
        self._close_transport(effects)
        host = self._hosts[self._host_index]
        params = self._query_params()
        if "key" in params and not self._clear_text_key_allowed(host):
            # RSA1, RSC18: a key never travels in clear text, except to this machine.
            error = _error(
                "Basic auth (the key) over a non-TLS connection is refused; use TLS or token auth",
                ErrorCode.INVALID_USE_OF_BASIC_AUTH_OVER_NON_TLS_TRANSPORT,
                401,
            )
            self._fail(effects, error)
            return
        self._transport_id += 1
        self._transport_live = True
        self._awaiting = "transport"
        self._attempt_deadline = now + self._timeout  # RTN14c
        self.host = host
        effects.append(OpenTransport(self._transport_id, host, params))

    def _clear_text_key_allowed(self, host: str) -> bool:
        options = self.options
        return options.tls or options.insecure_allow_basic_over_http or is_loopback_host(host)

    def _query_params(self) -> dict[str, str]:
        """RTN2 query parameters of the websocket URL."""
        return websocket_params(
            self.options,
            token=self._token if self._token_auth else None,
            heartbeats=self._heartbeats,
            resume_key=self._connection_key,
            recover_key=self._recover.connection_key if self._recover is not None else None,
        )

    def _attempt_failed(
        self, effects: list[Effect], error: AblyException | None, now: float, qualifies: bool
    ) -> None:
        """A connection attempt failed: try a fallback host (RTN17) or go DISCONNECTED."""
        self._attempt_error = error
        has_next = self._host_index + 1 < len(self._hosts)
        if qualifies and has_next:
            if self._connectivity_checked:
                self._host_index += 1
                self._open(effects, now)
            else:
                self._awaiting = "connectivity"  # RTN17j
                self._attempt_deadline = now + self._timeout
                effects.append(CheckConnectivity())
            return
        self._disconnected(effects, error, now)

    def _token_error(self, effects: list[Effect], error: AblyException, now: float) -> None:
        """A token was refused: renew once and retry (RTN14b, RTN15h2), or fail (RTN15h1, RSA4a)."""
        self._close_transport(effects)
        if not self._renewable:
            if self.state == _S.CONNECTED:
                self._fail(effects, error)  # RTN15h1
            else:
                self._fail(effects, self._no_renewal_error(error))  # RSA4a2
            return
        if self._token_renewed and self.state == _S.CONNECTING:
            self._token, self._token_refused = None, True  # a new one next time
            self._disconnected(effects, error, now)  # RTN14b: the renewed token failed too
            return
        self._token_renewed = True
        self._token = None
        if self.state == _S.CONNECTED:
            quick = self._backoff.lost(self._last_activity)
            self._left_connected(now)
            if not quick:  # refused again soon after a renewal: wait (RTB1), renew then
                self._token_refused = True
                self._disconnected(effects, error, now)
                return
        self._set_state(effects, Trigger.RENEW, error)
        self._awaiting = "token"
        self._attempt_deadline = now + self._timeout
        effects.append(RequestToken(force=True, reason=error))

    def _no_renewal_error(self, cause: AblyException) -> AblyException:
        return AblyException(
            "token expired or refused and there is no means to renew it",
            ErrorCode.TOKEN_RENEWAL_NOT_CONFIGURED,
            401,
            cause=cause,
        )

    # -- state entry ------------------------------------------------------------------------
    def _left_connected(self, now: float) -> None:
        self._disconnected_since = now
        for ch in self.channels.values():
            ch.on_disconnected()  # RTL3e, RTL13c
        self._channels_dirty = True
        self.pings.defer_sent()

    def _connection_lost(self, effects: list[Effect], error: AblyException, now: float) -> None:
        """RTN15a / RTN15h3: DISCONNECTED, then a resume attempt.

        At once the first time; a connection lost again before it was stable
        waits an RTB1 delay instead (:mod:`.reconnect`: no reconnect storm).
        """
        self._close_transport(effects)
        quick = self._backoff.lost(self._last_activity)
        self._left_connected(now)
        if not quick:
            self._disconnected(effects, error, now)
            return
        self._set_state(effects, Trigger.DISCONNECT, error, retry_in=0.0)
        if not self.options.queue_messages:
            effects.extend(self._publish_results(self.queue.fail_all(error)))  # RTN7d
        self._start_sequence(effects, now)

    def _disconnected(self, effects: list[Effect], error: AblyException | None, now: float) -> None:
        """An attempt failed for good: DISCONNECTED with an RTB1 retry, or SUSPENDED (RTN14e)."""
        self._close_transport(effects)
        self._awaiting = None
        self._attempt_deadline = None
        if self._disconnected_since is None:
            self._disconnected_since = now
        suspend_at = self._suspend_at()
        if self._suspended_mode or (suspend_at is not None and now >= suspend_at):
            self._suspend(effects, now, error)
            return
        delay = self._backoff.next_delay(self._rng.random())  # RTN14d, RTB1
        self._retry_deadline = now + delay
        reason = error or _error("connection failed", ErrorCode.CONNECTION_DISCONNECTED, 500)
        self._set_state(effects, Trigger.DISCONNECT, reason, retry_in=delay)
        if not self.options.queue_messages:
            effects.extend(self._publish_results(self.queue.fail_all(reason)))  # RTN7d

    def _suspend_at(self) -> float | None:
        if self._disconnected_since is None:
            return None
        ttl = (
            self.details.connection_state_ttl if self.details else self.options.connection_state_ttl
        )
        return self._disconnected_since + ttl

    def _suspend(
        self, effects: list[Effect], now: float, cause: AblyException | None = None
    ) -> None:
        """RTN14e/f: SUSPENDED, retrying every suspended_retry_timeout."""
        self._close_transport(effects)
        self._awaiting = None
        self._attempt_deadline = None
        self._suspended_mode = True
        delay = self.options.suspended_retry_timeout
        self._retry_deadline = now + delay
        error = AblyException(
            "connection to the server unavailable",
            ErrorCode.CONNECTION_SUSPENDED,
            400,
            cause=cause,
        )
        self._set_state(effects, Trigger.SUSPEND, error, retry_in=delay)
        effects.extend(self._publish_results(self.queue.fail_all(error)))  # RTN7e
        self._each_channel(effects, lambda ch: ch.on_connection_suspended(error))  # RTL3c
        effects.extend(self.pings.fail_all(error))  # RTN13b

    def _closed(self, effects: list[Effect]) -> None:
        """CLOSED (RTN12): pending publishes fail (RTN7e), channels DETACHED (RTL3b)."""
        self._close_transport(effects)
        self._clear_timers()
        self._set_state(effects, Trigger.CLOSED)
        error = _error("connection closed", ErrorCode.CONNECTION_CLOSED, 400)
        effects.extend(self._publish_results(self.queue.fail_all(error)))
        self._each_channel(effects, lambda ch: ch.on_connection_closed())
        effects.extend(self.pings.fail_all(error))

    def _fail(self, effects: list[Effect], error: AblyException) -> None:
        """FAILED (RTN14g, RTN15j): pending publishes fail (RTN7e), channels FAILED (RTL3a)."""
        self._close_transport(effects)
        self._clear_timers()
        self._set_state(effects, Trigger.FAIL, error)
        effects.extend(self._publish_results(self.queue.fail_all(error)))
        self._each_channel(effects, lambda ch: ch.on_connection_failed(error))
        effects.extend(self.pings.fail_all(error))

    def _reset(self, effects: list[Effect]) -> None:
        """RTN11d: channels INITIALIZED, errorReason cleared, msgSerial 0, a fresh connection."""
        self._each_channel(effects, lambda ch: ch.reset())
        self.error_reason = None
        self.queue.reset_serial()
        self._connection_id = None
        self._connection_key = None
        self.details = None
        self._disconnected_since = None
        self._suspended_mode = False
        self._backoff.reset()

    def _clear_timers(self) -> None:
        self._awaiting = None
        self._attempt_deadline = None
        self._retry_deadline = None
        self._close_deadline = None
        self._idle_interval = None
        self._disconnected_since = None
        self._suspended_mode = False

    def _set_state(
        self,
        effects: list[Effect],
        trigger: Trigger,
        reason: AblyException | None = None,
        *,
        retry_in: float | None = None,
    ) -> None:
        """Move by ``trigger`` through the transition table and emit the change."""
        previous = self._machine.move(trigger)  # raises IllegalTransition off the table
        state = self.state
        if previous == state:
            return  # RTN4h: never a state event equal to the current state
        if reason is not None or state in (_S.CONNECTED, _S.CLOSED):
            self.error_reason = reason  # RTN25
        self._emit(effects, previous, ConnectionEvent(state.value), reason, retry_in)

    def _emit(
        self,
        effects: list[Effect],
        previous: ConnectionState,
        event: ConnectionEvent,
        reason: AblyException | None,
        retry_in: float | None = None,
    ) -> None:
        change = ConnectionStateChange(previous, self.state, event, reason, retry_in)
        effects.append(EmitConnectionState(change))

    def _close_transport(self, effects: list[Effect]) -> None:
        if self._transport_live:
            self._transport_live = False
            effects.append(CloseTransport(self._transport_id))

    def _each_channel(
        self, effects: list[Effect], step: Callable[[ChannelCore], list[Effect]]
    ) -> None:
        self._channels_dirty = True
        for ch in self.channels.values():
            effects.extend(step(ch))

    # -- publishing -----------------------------------------------------------------------------
    def _submit(self, entry: PendingPublish) -> Sequence[Effect]:
        """RTL6c: send now when CONNECTED, queue when allowed (RTL6c2), else refuse (RTL6c4)."""
        state = self.state
        if state == _S.CONNECTED:
            return [SendFrame(self.queue.send(entry))]
        if self.options.queue_messages and state in (
            _S.INITIALIZED,
            _S.CONNECTING,
            _S.DISCONNECTED,
        ):
            self.queue.enqueue(entry)
            return _NONE
        return self._publish_results([CompletePublish(entry.handle, connection_state_error(state))])

    def _flush_queue(self, effects: list[Effect]) -> None:
        """RTL6c2 on CONNECTED; presence for re-attaching channels waits on the channel (RTL3d2)."""
        for entry in self.queue.take_queued():
            frame = entry.frame
            ch = self.channels.get(frame.channel or "")
            if (
                frame.action == Action.PRESENCE
                and ch is not None
                and ch.state == ChannelState.ATTACHING
            ):
                ch.presence_queue.append(entry)
            else:
                effects.append(SendFrame(self.queue.send(entry)))

    def _publish_results(self, done: Sequence[CompletePublish]) -> Sequence[Effect]:
        """Settled publishes for the driver; a failed automatic re-entry is an UPDATE (RTP17e)."""
        effects: list[Effect] = []
        for result in done:
            handle = result.handle
            if not isinstance(handle, ReenterHandle):
                effects.append(result)
            elif result.error is not None and self.state == _S.CONNECTED:
                ch = self.channels.get(handle.channel)
                if ch is not None:
                    effects.extend(ch.reenter_failed(handle.client_id, result.error))
        return effects

    def _channel_state_error(self, ch: ChannelCore) -> AblyException:
        code = ErrorCode.CHANNEL_OPERATION_FAILED_INVALID_CHANNEL_STATE
        return AblyException(f"channel {ch.name!r} is {ch.state.value}", code, 400)

    # -- recovery (RTN16) -------------------------------------------------------------------------
    def _load_recovery_key(self, text: str | None) -> RecoveryKeyContext | None:
        if not text:
            return None
        try:
            key = decode_recovery_key(text)
        except AblyException as exc:
            self.recover_error = exc  # RTN16f1: the driver logs it; we connect afresh
            return None
        self.queue.next_serial = key.msg_serial  # RTN16f
        for name, serial in key.channel_serials.items():
            self.channel(name).channel_serial = serial  # RTN16j
        return key
