"""The connection state transition table (RTN4, RTN27) and the one place the state changes.

In the style of h11's state machine: :data:`TRANSITIONS` maps
``(state, trigger)`` to the next state, and :class:`ConnectionStateMachine`
is the only holder of the connection state. :meth:`ConnectionStateMachine.move`
is the only code that assigns it, and it refuses a pair the table does not
name with :class:`IllegalTransition` (a bug in the core, never a server's or a
user's doing: those are answered by the core before it moves).

A :class:`Trigger` names *why* the state changes, not the frame or call that
caused it: one trigger is reached from several inputs (``ATTEMPT`` from
``connect()``, a retry timer, a resume or a new token). The inputs themselves
and what they do besides moving live in the other modules of this package.

A pair whose next state is the current one is a self-loop: it moves nowhere and
the core emits no state event for it (RTN4h).
"""

from __future__ import annotations

from enum import StrEnum

from ably_bridge.protocol.events import ConnectionState

__all__ = ["TRANSITIONS", "ConnectionStateMachine", "IllegalTransition", "Trigger"]

_S = ConnectionState


class Trigger(StrEnum):
    """Why the connection state changes."""

    # A connection attempt starts: connect() (RTN11, RTN11b, RTN11d), a retry timer
    # (RTN14d, RTN14f), a resume after a lost connection (RTN15a, RTN15h3), a new token (RTC8c).
    ATTEMPT = "attempt"
    # The server's CONNECTED frame ends the attempt (RTN4b; after a resume RTN15c6, RTN15c7).
    CONNECTED = "connected"
    # A token was refused: fetch a new one and try again (RTN14b, RTN15h2).
    RENEW = "renew"
    # The transport or the attempt failed; retry after a delay or at once (RTN14d, RTN15a).
    DISCONNECT = "disconnect"
    # Disconnected for longer than connectionStateTtl (RTN14e) or already suspended (RTN14f).
    SUSPEND = "suspend"
    # close() with a transport to send CLOSE on, or one still opening (RTN12a, RTN12f).
    CLOSE = "close"
    # Closing completed (RTN12b, RTN12c) or close() with no transport (RTN12d).
    CLOSED = "closed"
    # A fatal error: an ERROR frame (RTN14g, RTN15j), a token that cannot be renewed
    # (RTN15h1, RSA4a2), a 403 from auth (RSA4d), a key in clear text (RSA1).
    FAIL = "fail"


T = Trigger

# (state, trigger) -> next state. Anything else is a bug in the core.
TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (_S.INITIALIZED, T.ATTEMPT): _S.CONNECTING,  # RTN11
    (_S.INITIALIZED, T.CLOSED): _S.CLOSED,  # RTN12d
    (_S.CONNECTING, T.CONNECTED): _S.CONNECTED,  # RTN4b
    (_S.CONNECTING, T.RENEW): _S.CONNECTING,  # RTN14b: the same attempt, with a new token
    (_S.CONNECTING, T.DISCONNECT): _S.DISCONNECTED,  # RTN14d
    (_S.CONNECTING, T.SUSPEND): _S.SUSPENDED,  # RTN14e, RTN14f
    (_S.CONNECTING, T.CLOSE): _S.CLOSING,  # RTN12f
    (_S.CONNECTING, T.CLOSED): _S.CLOSED,  # RTN12d
    (_S.CONNECTING, T.FAIL): _S.FAILED,  # RTN14g, RSA4d
    (_S.CONNECTED, T.RENEW): _S.CONNECTING,  # RTN15h2
    (_S.CONNECTED, T.DISCONNECT): _S.DISCONNECTED,  # RTN15a, RTN15h3
    (_S.CONNECTED, T.SUSPEND): _S.SUSPENDED,  # RTN14e with a connectionStateTtl of 0
    (_S.CONNECTED, T.CLOSE): _S.CLOSING,  # RTN12a
    (_S.CONNECTED, T.FAIL): _S.FAILED,  # RTN15j, RTN15h1
    (_S.DISCONNECTED, T.ATTEMPT): _S.CONNECTING,  # RTN14d, RTN15a
    (_S.DISCONNECTED, T.SUSPEND): _S.SUSPENDED,  # RTN14e
    (_S.DISCONNECTED, T.CLOSED): _S.CLOSED,  # RTN12d
    (_S.SUSPENDED, T.ATTEMPT): _S.CONNECTING,  # RTN14f
    (_S.SUSPENDED, T.CLOSED): _S.CLOSED,  # RTN12d
    (_S.CLOSING, T.ATTEMPT): _S.CONNECTING,  # RTN11b
    (_S.CLOSING, T.CLOSED): _S.CLOSED,  # RTN12b, RTN12c
    (_S.CLOSING, T.FAIL): _S.FAILED,  # an ERROR frame while closing
    (_S.CLOSED, T.ATTEMPT): _S.CONNECTING,  # RTN11d
    (_S.FAILED, T.ATTEMPT): _S.CONNECTING,  # RTN11d
}


class IllegalTransition(RuntimeError):
    """The core asked for a ``(state, trigger)`` pair :data:`TRANSITIONS` does not name."""

    def __init__(self, state: ConnectionState, trigger: Trigger) -> None:
        super().__init__(f"no connection transition from {state.value} on {trigger.value}")
        self.current = state
        self.trigger = trigger


class ConnectionStateMachine:
    """The connection state; :meth:`move` is the only way to change it."""

    _state: ConnectionState = _S.INITIALIZED  # RTN4a: every connection starts INITIALIZED

    @property
    def state(self) -> ConnectionState:
        return self._state

    def move(self, trigger: Trigger) -> ConnectionState:
        """Apply ``trigger`` and return the previous state; refuse a pair the table lacks."""
        previous = self._state
        target = TRANSITIONS.get((previous, trigger))
        if target is None:
            raise IllegalTransition(previous, trigger)
        self._state = target
        return previous
