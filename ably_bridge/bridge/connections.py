"""Many realtime connections behind one :class:`~ably_bridge.bridge.source.ChannelSource`.

This module owns :class:`ConnectionPool`. One Ably connection attaches at most
about 200 channels and receives at most about 50 messages/s, so a bridge with
thousands of channels spreads them over several connections, each a
:class:`~ably_bridge.bridge.realtime_source.RealtimeSource` with its own
``AblyRealtime`` (its own loop thread, websocket and listener pool).

Placement (``ably.channels_per_connection``, ``ably.max_connections``,
``ably.message_rate_budget``):

* **Sticky and deterministic**: a channel stays on the connection it was
  placed on until it is detached; re-attaching it (new handlers, a resume
  after back-pressure) goes to the same connection. For the same sequence of
  attaches the placement is the same (connections are tried in creation order).
* **Fill first**: a new channel goes to the first connection with fewer than
  ``channels_per_connection`` channels whose measured inbound rate plus the
  channel's own (when known from an earlier placement) stays within
  ``message_rate_budget``; if none has room, a new connection is opened (up to
  ``max_connections``, 0 = no limit). With every connection at its channel
  limit and none allowed more, the attach fails (:class:`CapacityError`; the
  daemon retries it and ``/readyz`` names the channel).
* **Rate budget**: each channel's inbound messages are counted as they pass
  to the daemon; :meth:`ConnectionPool.maintain` (called by the daemon every
  few seconds) turns counts into rates (EWMA) and, when a connection carries
  more than its budget, moves its busiest channel that fits elsewhere to
  another connection (or a new one). A move is a detach from one connection
  and an attach on another with the same handlers: the daemon sees an ATTACHED
  without continuity and backfills from the checkpoint, so nothing is lost.
  One move per overloaded connection per call, to avoid thrashing.
* Connections left without channels are closed (in the background), except
  the first one, which stays open so the process always shows its
  connectivity.

``connection_state()`` is the worst state over the connections (all
``connected`` means ``connected``); ``connection_states()`` lists each one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ably_bridge.bridge.secret import Secret
from ably_bridge.bridge.source import ChannelSource, SourceHandlers
from ably_bridge.clock import Clock, SystemClock
from ably_bridge.protocol.models import Message

if TYPE_CHECKING:
    from ably_bridge.bridge.config import BridgeConfig

__all__ = ["CapacityError", "ConnectionPool", "PoolOptions"]

logger = logging.getLogger(__name__)

# Most severe first: the pool reports the worst state of its connections.
_SEVERITY = (
    "failed",
    "suspended",
    "disconnected",
    "connecting",
    "initialized",
    "closing",
    "closed",
)
_EWMA = 0.5  # weight of the newest rate sample
_MOVE_HEADROOM = 0.8  # a moved channel must leave its new connection below this share of budget
_RATE_MEMORY = 100_000  # channel rates remembered after detach (for placing them again)


class CapacityError(Exception):
    """Every connection is at its channel limit and no more connections are allowed."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """Placement limits (from ``ably.*`` in the configuration)."""

    channels_per_connection: int = 200
    max_connections: int = 0  # 0 = no limit
    message_rate_budget: float = 50.0  # inbound messages/s per connection


@dataclass(slots=True)
class _Placed:
    """One attached channel: where it is and how busy it is."""

    connection: _Connection
    handlers: SourceHandlers  # the daemon's (re-used when the channel moves)
    cipher_key: Secret | None
    presence: bool
    count: int = 0  # messages received since the last maintain()
    rate: float = 0.0  # messages/s (EWMA)


@dataclass(eq=False, slots=True)
class _Connection:
    number: int
    source: ChannelSource
    channels: set[str] = field(default_factory=set)

    def load(self, placed: dict[str, _Placed]) -> float:
        return sum(placed[name].rate for name in self.channels)


class ConnectionPool:
    """A :class:`ChannelSource` spreading channels over several connections (module docstring)."""

    def __init__(
        self,
        factory: Callable[[int], ChannelSource],
        options: PoolOptions | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._factory = factory
        self.options = options or PoolOptions()
        self._clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._connections: list[_Connection] = []
        self._placed: dict[str, _Placed] = {}
        self._rates: dict[str, float] = {}  # remembered after detach
        self._created = 0
        self._last_maintain = self._clock.monotonic()
        self._closed = False
        self.moves = 0
        self._open()  # the first connection, at once (as a single RealtimeSource would)

    @classmethod
    def from_config(cls, config: BridgeConfig, *, callback_workers: int = 4) -> ConnectionPool:
        """A pool of realtime connections built from ``config.ably``."""
        from ably_bridge.bridge.realtime_source import RealtimeSource

        ably = config.ably
        options = PoolOptions(
            channels_per_connection=ably.channels_per_connection,
            max_connections=ably.max_connections,
            message_rate_budget=ably.message_rate_budget,
        )
        return cls(
            lambda _n: RealtimeSource.from_config(config, callback_workers=callback_workers),
            options,
        )

    # -- ChannelSource ----------------------------------------------------------------
    def attach(
        self,
        channel: str,
        handlers: SourceHandlers,
        *,
        cipher_key: Secret | None = None,
        presence: bool = False,
    ) -> None:
        with self._lock:
            placed = self._placed.get(channel)
            if placed is None:
                conn = self._choose(self._rates.get(channel, 0.0))
                placed = _Placed(conn, handlers, cipher_key, presence)
                placed.rate = self._rates.get(channel, 0.0)
                self._placed[channel] = placed
                conn.channels.add(channel)
            else:
                placed.handlers, placed.cipher_key, placed.presence = (
                    handlers, cipher_key, presence,
                )  # fmt: skip
            source = placed.connection.source
        source.attach(channel, self._metered(placed), cipher_key=cipher_key, presence=presence)

    def detach(self, channel: str) -> None:
        with self._lock:
            placed = self._placed.pop(channel, None)
            if placed is None:
                return
            self._remember(channel, placed.rate)
            conn = placed.connection
            conn.channels.discard(channel)
            idle = self._retire_if_idle(conn)
        conn.source.detach(channel)
        if idle:
            self._close_later(conn)

    def connection_state(self) -> str:
        states = self.connection_states()
        for state in _SEVERITY:
            if state in states:
                return state
        return "connected"

    def connection_states(self) -> list[str]:
        """The state of each connection, in creation order."""
        with self._lock:
            sources = [c.source for c in self._connections]
        return [s.connection_state() for s in sources]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
            self._placed.clear()
        threads = [
            threading.Thread(target=self._close_one, args=(c,), daemon=True) for c in connections
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15.0)

    # -- status ------------------------------------------------------------------------
    def placement(self) -> dict[str, int]:
        """Channel -> number of the connection it is on."""
        with self._lock:
            return {name: p.connection.number for name, p in self._placed.items()}

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def connections_status(self) -> list[tuple[int, str, int, float]]:
        """(number, state, channels, inbound messages/s) of each connection, for /status."""
        with self._lock:
            rows = [(c.number, c.source, len(c.channels), c.load(self._placed))
                    for c in self._connections]  # fmt: skip
        return [(n, source.connection_state(), count, rate) for n, source, count, rate in rows]

    def rates(self) -> list[float]:
        """Inbound messages/s per connection (as of the last :meth:`maintain`)."""
        with self._lock:
            return [c.load(self._placed) for c in self._connections]

    # -- rate budget ---------------------------------------------------------------------
    def maintain(self) -> int:
        """Update the rates and move channels off overloaded connections; how many moved."""
        moves: list[tuple[str, _Placed, _Connection]] = []
        with self._lock:
            now = self._clock.monotonic()
            elapsed = now - self._last_maintain
            if elapsed <= 0 or self._closed:
                return 0
            self._last_maintain = now
            for placed in self._placed.values():
                sample = placed.count / elapsed
                placed.count = 0
                # The first sample of a channel is its rate; later ones are smoothed.
                placed.rate = sample if not placed.rate else (
                    _EWMA * sample + (1 - _EWMA) * placed.rate
                )  # fmt: skip
            budget = self.options.message_rate_budget
            for conn in list(self._connections):
                load = conn.load(self._placed)
                if load <= budget or len(conn.channels) < 2:
                    continue
                move = self._plan_move(conn, load)
                if move is not None:
                    moves.append(move)
        for name, placed, target in moves:
            self._move(name, placed, target)
        return len(moves)

    def _plan_move(self, conn: _Connection, load: float) -> tuple[str, _Placed, _Connection] | None:
        budget = self.options.message_rate_budget
        for name in sorted(conn.channels, key=lambda n: self._placed[n].rate, reverse=True):
            rate = self._placed[name].rate
            if load - rate <= 0:
                continue  # one channel is the whole load: moving it helps nothing
            for other in self._connections:
                if (
                    other is not conn
                    and len(other.channels) < self.options.channels_per_connection
                    and other.load(self._placed) + rate <= budget * _MOVE_HEADROOM
                ):
                    return name, self._placed[name], other
            if self._may_open():
                return name, self._placed[name], self._open()
            return None
        return None

    def _move(self, name: str, placed: _Placed, target: _Connection) -> None:
        with self._lock:
            if self._placed.get(name) is not placed:
                return  # detached meanwhile
            old = placed.connection
            old.channels.discard(name)
            target.channels.add(name)
            placed.connection = target
            self.moves += 1
            idle = self._retire_if_idle(old)
        logger.info(
            "moving %s from connection %d to %d (%.1f msg/s; budget %.0f per connection)",
            name, old.number, target.number, placed.rate, self.options.message_rate_budget,
            extra={"channel": name},
        )  # fmt: skip
        old.source.detach(name)
        if idle:
            self._close_later(old)
        # Same handlers: the daemon sees an ATTACHED without continuity and backfills.
        target.source.attach(
            name, self._metered(placed), cipher_key=placed.cipher_key, presence=placed.presence
        )

    # -- internals --------------------------------------------------------------------------
    def _choose(self, rate: float) -> _Connection:
        limit = self.options.channels_per_connection
        budget = self.options.message_rate_budget
        for conn in self._connections:
            if len(conn.channels) < limit and conn.load(self._placed) + rate <= budget:
                return conn
        if self._may_open():
            return self._open()
        roomy = [c for c in self._connections if len(c.channels) < limit]
        if roomy:  # over the rate budget, but within the channel limit: least busy
            return min(roomy, key=lambda c: c.load(self._placed))
        raise CapacityError(
            f"all {len(self._connections)} connection(s) hold {limit} channels "
            "(raise ably.max_connections or ably.channels_per_connection)"
        )

    def _retire_if_idle(self, conn: _Connection) -> bool:
        """Forget an empty connection other than the first (called with the lock)."""
        if conn.channels or not self._connections or conn is self._connections[0]:
            return False
        if conn in self._connections:
            self._connections.remove(conn)
        return True

    def _may_open(self) -> bool:
        cap = self.options.max_connections
        return not self._closed and (cap == 0 or len(self._connections) < cap)

    def _open(self) -> _Connection:
        number = self._created
        self._created += 1
        conn = _Connection(number, self._factory(number))
        self._connections.append(conn)
        if number:
            logger.info("opened realtime connection %d", number)
        return conn

    def _metered(self, placed: _Placed) -> SourceHandlers:
        inner = placed.handlers.messages

        def messages(batch: Sequence[Message]) -> None:
            placed.count += len(batch)  # one listener thread per channel: no lock needed
            inner(batch)

        return SourceHandlers(
            messages, placed.handlers.presence, placed.handlers.presence_sync,
            placed.handlers.state,
        )  # fmt: skip

    def _remember(self, channel: str, rate: float) -> None:
        if len(self._rates) >= _RATE_MEMORY:
            self._rates.clear()
        self._rates[channel] = rate

    def _close_later(self, conn: _Connection) -> None:
        logger.info("closing idle realtime connection %d", conn.number)
        threading.Thread(target=self._close_one, args=(conn,), daemon=True).start()

    @staticmethod
    def _close_one(conn: _Connection) -> None:
        try:
            conn.source.close()
        except Exception as exc:
            logger.warning("closing realtime connection %d failed: %s", conn.number, exc)
