"""What entering DISCONNECTED, SUSPENDED, CLOSED or FAILED does (RTN7d, RTN7e, RTN14d-f, RTL3).

:class:`StateEntry` moves the state (through :mod:`.table`) and does what goes
with it: close the transport, plan the next attempt (an RTB1 delay from
DISCONNECTED, suspended_retry_timeout from SUSPENDED), fail pending publishes
and pings, and carry the channels along (RTL3a-c, RTL3e). It also resets the
connection for a fresh start (RTN11d).
"""

from __future__ import annotations

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.connection.base import simple_error
from ably_bridge.protocol.connection.publishing import Publishing
from ably_bridge.protocol.connection.table import Trigger
from ably_bridge.protocol.events import Effect

__all__ = ["StateEntry"]


class StateEntry(Publishing):
    """Entering the states that end or pause a connection; see the module docstring."""

    def _left_connected(self, now: float) -> None:
        self._disconnected_since = now
        for ch in self.channels.values():
            ch.on_disconnected()  # RTL3e, RTL13c
        self._channels_dirty = True
        self.pings.defer_sent()

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
        reason = error or simple_error("connection failed", ErrorCode.CONNECTION_DISCONNECTED, 500)
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
        error = simple_error("connection closed", ErrorCode.CONNECTION_CLOSED, 400)
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
