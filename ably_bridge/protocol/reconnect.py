"""When the realtime connection may try again: one quick retry, then backoff (RTN15a, RTB1).

:class:`ReconnectBackoff` owns the retry count of the connection and the rule
that keeps a flapping server from causing a reconnect storm:

* a connection lost after it was CONNECTED is retried **at once** (RTN15a,
  RTN15h3) - but only once: if the connection that attempt gives is lost again
  before it was *stable*, the next attempt waits like any failed one;
* every failed attempt and every such repeated loss goes DISCONNECTED for
  ``RetryPolicy.delay(n)`` with ``n`` counting up (RTN14d, RTB1: 1, 4/3, 5/3,
  2, 2... times the base, with jitter);
* a connection is stable once the server showed signs of life (frames,
  heartbeats, websocket pings) for ``stable_after`` seconds
  (``disconnected_retry_timeout``) after CONNECTED; its loss earns the quick
  retry back and starts the count again. Time alone does not count, so a
  server that answers CONNECTED and then falls silent backs off too.

So a server that answers CONNECTED and then drops the socket sees two
attempts, then one per backoff delay - not one per round trip. Pure state: it
reads no clock (the core passes the times) and draws no random number (the
caller passes the uniform sample).
"""

from __future__ import annotations

from ably_bridge.protocol.retry import RetryPolicy

__all__ = ["ReconnectBackoff"]


class ReconnectBackoff:
    """The retry count and the once-only quick retry of one connection; see the module."""

    __slots__ = ("_connected_at", "_quick_used", "attempt", "policy", "stable_after")

    def __init__(self, policy: RetryPolicy, stable_after: float) -> None:
        self.policy = policy
        self.stable_after = stable_after
        self.attempt = 0  # retries since the last stable connection (RTB1's n)
        self._quick_used = False
        self._connected_at: float | None = None

    def connected(self, now: float) -> None:
        """The connection is CONNECTED (again)."""
        self._connected_at = now

    def lost(self, last_activity: float) -> bool:
        """A CONNECTED transport was lost: True to retry at once (RTN15a).

        ``last_activity`` is when the server was last heard from. False when the
        quick retry was already spent since the connection was last stable:
        the caller then waits :meth:`next_delay` (RTB1).
        """
        connected_at = self._connected_at
        self._connected_at = None
        if connected_at is not None and last_activity - connected_at >= self.stable_after:
            self.reset()  # it was alive long enough: a fresh start
        if self._quick_used:
            return False
        self._quick_used = True
        return True

    def next_delay(self, sample: float) -> float:
        """Seconds until the next attempt after a failure (RTB1), counting the attempt."""
        self.attempt += 1
        return self.policy.delay(self.attempt, sample)

    def reset(self) -> None:
        """Forget past failures (a stable connection; a connect after CLOSED or FAILED)."""
        self.attempt = 0
        self._quick_used = False

    def __repr__(self) -> str:
        return f"ReconnectBackoff(attempt={self.attempt}, quick_used={self._quick_used})"
