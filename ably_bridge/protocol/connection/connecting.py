"""Connection attempts: connect, resume and recover (RTN11, RTN14, RTN15, RTN16, RTN17).

:class:`Connecting` owns the connection sequence: ``connect()`` (RTN11), the
hosts of a sequence, primary first and fallbacks after a connectivity check
(RTN17), the websocket query of each attempt with its resume or recover key
(RTN2, RTN15b, RTN16k), a failed or timed-out attempt (RTN14c, RTN14d), a lost
connection resumed at once or after an RTB1 delay (RTN15a), and the CONNECTED
frame: resumed or not (RTN15c6, RTN15c7), what awaits an ACK resent (RTN19a),
connection details applied (RTN15e, RTN23a, RTN24). The recovery key is read
here (RTN16f, RTN16j) and written here (RTN16g).
"""

from __future__ import annotations

from collections.abc import Sequence

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.connection.base import INACTIVE_STATES, NO_EFFECTS, simple_error
from ably_bridge.protocol.connection.states import StateEntry
from ably_bridge.protocol.connection.table import Trigger
from ably_bridge.protocol.events import (
    CheckConnectivity,
    ConnectionEvent,
    ConnectionState,
    Effect,
    OpenTransport,
    RequestToken,
    SendFrame,
)
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.protocol.recovery import RecoveryKeyContext, decode_recovery_key
from ably_bridge.protocol.transport_params import (
    connection_hosts,
    is_loopback_host,
    websocket_params,
)

__all__ = ["Connecting"]

_S = ConnectionState


class Connecting(StateEntry):
    """The connection sequence and its attempts; see the module docstring."""

    def connect(self, now: float) -> Sequence[Effect]:
        """RTN11: start connecting (no-op while CONNECTING or CONNECTED, RTN11e)."""
        state = self.state
        if state in (_S.CONNECTING, _S.CONNECTED):
            return NO_EFFECTS
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

    def connectivity_checked(self, ok: bool, now: float) -> Sequence[Effect]:
        """RTN17j: the answer to :class:`CheckConnectivity`."""
        if self.state != _S.CONNECTING or self._awaiting != "connectivity":
            return NO_EFFECTS
        effects: list[Effect] = []
        if ok:
            self._connectivity_checked = True
            self._host_index += 1
            self._open(effects, now)
        else:
            self._disconnected(effects, self._attempt_error, now)
        return effects

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
            error = simple_error(
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

    def _attempt_timed_out(self, effects: list[Effect], now: float) -> None:
        if self._awaiting == "token":
            error = simple_error("timeout obtaining a token", ErrorCode.TOKEN_REQUEST_FAILED, 401)
            self._disconnected(effects, error, now)  # RSA4c
        elif self._awaiting == "connectivity":
            self._disconnected(effects, self._attempt_error, now)
        else:
            self._close_transport(effects)
            error = simple_error("connection attempt timeout", ErrorCode.TIMEOUT_ERROR, 500)
            self._attempt_failed(effects, error, now, True)  # RTN14c

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

    # -- the CONNECTED frame (RTN15c6, RTN15c7, RTN19a, RTN24) ------------------------

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

    # -- recovery (RTN16) ------------------------------------------------------------

    def recovery_key(self) -> str | None:
        """RTN16g: the recovery key, or ``None`` when inactive or never connected (RTN16g2)."""
        if self.state in INACTIVE_STATES or self.state == _S.SUSPENDED or not self._connection_key:
            return None
        serials = self.channel_serials()
        return RecoveryKeyContext(self._connection_key, self.queue.next_serial, serials).encode()

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
