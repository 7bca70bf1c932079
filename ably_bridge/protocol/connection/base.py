"""What every layer of the connection core shares: its fields, the state, the channels.

:class:`ConnectionBase` holds every field the loop thread of a realtime client
mutates (connection id/key/details, channels keyed by name, the publish queue,
pings, the transport and attempt bookkeeping, the timers) and the few helpers
every layer uses: :meth:`~ConnectionBase._set_state`, the one way the state
moves (through :mod:`.table`, RTN4h, RTN25), state events, closing the
transport, and stepping every channel.

The layers build on it in one line, each using only those below it:
:mod:`.publishing` -> :mod:`.states` -> :mod:`.connecting` -> :mod:`.auth`
-> :mod:`.routing` -> :mod:`.core` (:class:`~.core.ConnectionCore`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.channel import ChannelCore
from ably_bridge.protocol.connection.table import ConnectionStateMachine, Trigger
from ably_bridge.protocol.events import (
    ChannelState,
    CloseTransport,
    ConnectionEvent,
    ConnectionState,
    ConnectionStateChange,
    Effect,
    EmitConnectionState,
)
from ably_bridge.protocol.models import ConnectionDetails, ProtocolMessage
from ably_bridge.protocol.pending import PublishQueue
from ably_bridge.protocol.pings import PingTracker
from ably_bridge.protocol.reconnect import ReconnectBackoff
from ably_bridge.protocol.recovery import RecoveryKeyContext
from ably_bridge.protocol.retry import RetryPolicy

if TYPE_CHECKING:
    from ably_bridge.options import ClientOptions


__all__ = [
    "INACTIVE_STATES",
    "NO_EFFECTS",
    "SEND_BLOCKED_CHANNEL_STATES",
    "Awaiting",
    "ConnectionBase",
    "simple_error",
]

_S = ConnectionState
NO_EFFECTS: tuple[Effect, ...] = ()  # what an input with no effect returns
INACTIVE_STATES = frozenset({_S.CLOSED, _S.CLOSING, _S.FAILED})
SEND_BLOCKED_CHANNEL_STATES = frozenset({ChannelState.SUSPENDED, ChannelState.FAILED})
Awaiting = Literal["token", "transport", "connectivity"] | None


def simple_error(message: str, code: int, status: int) -> AblyException:
    return AblyException(message, code, status)


class ConnectionBase:
    """The fields and the shared helpers of :class:`~.core.ConnectionCore`."""

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
        self._recover: RecoveryKeyContext | None = None  # RTN16: set by ConnectionCore
        # frame action -> handler (ConnectionCore fills it; MESSAGE has its own fast path)
        self._handlers: dict[int, Callable[[ProtocolMessage, float], Sequence[Effect]]] = {}

    # -- properties -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The connection state (RTN4); read-only, moved only through :mod:`.table`."""
        return self._machine.state

    @property
    def id(self) -> str | None:
        """Connection id; ``None`` until connected and in CLOSED/CLOSING/FAILED (RTN8)."""
        return None if self.state in INACTIVE_STATES else self._connection_id

    @property
    def key(self) -> str | None:
        """Connection key; ``None`` until connected and in CLOSED/CLOSING/FAILED (RTN9)."""
        return None if self.state in INACTIVE_STATES else self._connection_key

    @property
    def transport_id(self) -> int:
        """The number of the newest transport; inputs naming any other are ignored (RTN11b)."""
        return self._transport_id

    @property
    def msg_serial(self) -> int:
        return self.queue.next_serial

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

    # -- the one checked state change, and helpers every layer uses ------------------

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

    def _channel_state_error(self, ch: ChannelCore) -> AblyException:
        code = ErrorCode.CHANNEL_OPERATION_FAILED_INVALID_CHANNEL_STATE
        return AblyException(f"channel {ch.name!r} is {ch.state.value}", code, 400)
