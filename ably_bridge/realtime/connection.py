"""``client.connection``: the state of the realtime connection and the calls that change it.

:class:`Connection` is a thin, thread-safe facade over the loop thread
(:class:`~.loop.SessionLoop`). Reads (``state``, ``id``, ``key``,
``error_reason``) look at the core directly - attribute reads are atomic and
only the loop thread writes. Calls post a command to the loop; the blocking
ones wait with a timeout (default ``realtime_request_timeout``) and raise
:class:`~ably_bridge.errors.AblyException` 50003 when it passes.

Listeners (``on``/``once``/``off``) receive
:class:`~ably_bridge.protocol.events.ConnectionStateChange` for every state
(``"connected"``, ``"disconnected"``...) and ``"update"`` (RTN4h, RTN24), on the
callback pool, in order per listener.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.events import (
    ConnectionEvent,
    ConnectionState,
    ConnectionStateChange,
    Effect,
)
from ably_bridge.realtime.inline import in_inline_listener

if TYPE_CHECKING:
    from ably_bridge.protocol.models import ConnectionDetails
    from ably_bridge.realtime.loop import SessionLoop

__all__ = ["Connection"]

log = logging.getLogger(__name__)

_S = ConnectionState
_SETTLED = frozenset({_S.CONNECTED, _S.FAILED, _S.SUSPENDED, _S.CLOSED})
ConnectionListener = Callable[[ConnectionStateChange], Any]
EventArg = ConnectionEvent | str | Iterable[ConnectionEvent | str] | None


def _split(
    event_or_listener: EventArg | ConnectionListener, listener: ConnectionListener | None
) -> tuple[Any, ConnectionListener]:
    """``on(listener)`` or ``on(event, listener)``."""
    if listener is None:
        if not callable(event_or_listener):
            raise TypeError("a listener is required")
        return None, event_or_listener
    return _events(event_or_listener), listener


def _events(event: Any) -> Any:
    if event is None or isinstance(event, ConnectionEvent):
        return event
    if isinstance(event, str):
        return ConnectionEvent(event)
    return [ConnectionEvent(e) for e in event]


class Connection:
    """The realtime connection (RTN); see the module docstring."""

    def __init__(self, loop: SessionLoop) -> None:
        self._loop = loop
        self._core = loop.core
        self._emitter = loop.delivery.connection

    # -- reads ----------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        """The current state (RTN4)."""
        return self._core.state

    @property
    def id(self) -> str | None:
        """The connection id, ``None`` when not connected (RTN8)."""
        return self._core.id

    @property
    def key(self) -> str | None:
        """The connection key, a secret (RTN9)."""
        return self._core.key

    @property
    def error_reason(self) -> AblyException | None:
        """The error of the last state change that had one (RTN25)."""
        return self._core.error_reason

    @property
    def details(self) -> ConnectionDetails | None:
        """``connectionDetails`` of the last CONNECTED (RTN21)."""
        return self._core.details

    @property
    def recovery_key(self) -> str | None:
        """Deprecated spelling of :meth:`create_recovery_key`."""
        return self.create_recovery_key()

    # -- listeners ------------------------------------------------------------------
    def on(
        self,
        event_or_listener: EventArg | ConnectionListener,
        listener: ConnectionListener | None = None,
    ) -> Callable[[], None]:
        """Listen to ``event`` (a state name, ``"update"``, several, or all); returns ``off``."""
        event, fn = _split(event_or_listener, listener)
        return self._emitter.on(event, fn)

    def once(
        self,
        event_or_listener: EventArg | ConnectionListener,
        listener: ConnectionListener | None = None,
    ) -> Callable[[], None]:
        """Like :meth:`on`, for the first matching event only."""
        event, fn = _split(event_or_listener, listener)
        return self._emitter.once(event, fn)

    def off(self, event: Any = None, listener: ConnectionListener | None = None) -> None:
        """Remove listeners: all, those of ``event`` (one or several), or ``listener``.

        ``off(listener)`` removes ``listener`` everywhere; ``off(["connected",
        "failed"])`` removes the listeners of those two events only.
        """
        if callable(event) and listener is None:
            event, listener = None, event
        self._emitter.off(_events(event), listener)

    # -- calls ----------------------------------------------------------------------
    def connect(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Connect (RTN11). With ``wait``, block until CONNECTED; raise if it fails."""
        core = self._core
        if not wait:
            self._loop.post(lambda now: core.connect(now))
            return
        self._await_state(lambda now: core.connect(now), {_S.CONNECTED}, timeout, "connect")

    def close(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Close (RTN12). With ``wait``, block until CLOSED (or FAILED)."""
        core = self._core
        if not wait:
            self._loop.post(lambda now: core.close(now))
            return
        self._await_state(lambda now: core.close(now), {_S.CLOSED, _S.FAILED}, timeout, "close")

    def ping(self, timeout: float | None = None) -> float:
        """Round-trip time to the server in seconds (RTN13)."""
        core = self._core
        result: float = self._loop.call(
            lambda f, now: core.ping(f, now), self._timeout(timeout), "ping"
        )
        return result

    def create_recovery_key(self) -> str | None:
        """A key with which a new client can take over this connection (RTN16g); a secret."""
        core = self._core
        return self._loop.run_sync(lambda now: core.recovery_key())

    def set_read_limit(self, limit: int | None) -> None:
        """Largest inbound frame in bytes; a larger one drops the transport (then it resumes)."""
        if limit is not None and limit <= 0:
            raise AblyException("read limit must be positive", ErrorCode.BAD_REQUEST, 400)
        links = self._loop.links
        self._loop.run_sync(lambda now: links.set_read_limit(limit))

    def wait_for_state(
        self, *states: ConnectionState | str, timeout: float | None = None
    ) -> ConnectionState:
        """Block until the connection is in one of ``states``; returns it (for tests and tools)."""
        wanted = {ConnectionState(s) for s in states}
        self._await_state(None, wanted, timeout, f"waiting for {sorted(wanted)}", strict=False)
        return self.state

    # -- internals ------------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float:
        return self._loop.options.realtime_request_timeout if timeout is None else timeout

    def _await_state(
        self,
        command: Callable[[float], Sequence[Effect]] | None,
        wanted: set[ConnectionState],
        timeout: float | None,
        what: str,
        *,
        strict: bool = True,
    ) -> None:
        """Run ``command`` and wait until a state in ``wanted`` (``strict``: fail on others)."""
        if self._loop.on_loop_thread() or in_inline_listener():
            raise AblyException(
                f"{what}: a blocking call on the loop thread or from an inline listener",
                ErrorCode.BAD_REQUEST,
                400,
            )
        reached = threading.Event()
        outcome: list[ConnectionStateChange] = []
        stop_at = _SETTLED | wanted if strict else wanted

        def listener(change: ConnectionStateChange) -> None:
            if change.current in stop_at and not reached.is_set():
                outcome.append(change)
                reached.set()

        # Listen before acting: the change may come at once.
        off = self._loop.delivery.watch_connection(listener)
        try:
            if command is not None:
                self._loop.post(command)
            state = self._loop.run_sync(lambda now: self._core.state)
            if state in wanted:
                return
            if strict and command is None and state in _SETTLED:
                raise self._state_error(state, self._core.error_reason, what)
            limit = self._timeout(timeout) if timeout is not None or strict else 3600.0
            if not reached.wait(limit):
                reason = self._loop.run_sync(lambda now: self._core.error_reason)
                why = f": {reason.message}" if reason is not None else ""
                raise AblyException(
                    f"{what} timed out after {limit:g}s (state {self.state.value}{why})",
                    ErrorCode.TIMEOUT_ERROR,
                    500,
                )
        finally:
            off()
        change = outcome[0]
        if change.current not in wanted:
            raise self._state_error(change.current, change.reason, what)

    def _state_error(
        self, state: ConnectionState, reason: AblyException | None, what: str
    ) -> AblyException:
        if reason is not None:
            return reason
        return AblyException(
            f"{what} failed: connection is {state.value}", ErrorCode.CONNECTION_FAILED, 400
        )

    def __repr__(self) -> str:
        return f"Connection(state={self.state.value}, id={self.id!r})"
