"""Pings on the realtime connection (RTN13): HEARTBEATs with an id, answered by an echo.

:class:`PingTracker` owns the pings in flight, keyed by their random id
(RTN13e). A ping asked for while CONNECTING/DISCONNECTED is *deferred*: it is
sent once CONNECTED (RTN13d), as is one whose transport dropped before the
echo came. Every ping fails after ``realtime_request_timeout`` (RTN13c), and
all of them when the connection becomes SUSPENDED, CLOSED or FAILED (RTN13b).
Like the rest of the core it reads no clock: ``now`` comes in.
"""

from __future__ import annotations

from collections.abc import Iterator

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import CompletePing, Effect, Handle, SendFrame
from ably_bridge.protocol.models import ProtocolMessage

__all__ = ["PingTracker"]


class PingTracker:
    """Pings in flight: id -> (handle, sent_at or None while deferred, deadline)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[str, tuple[Handle, float | None, float]] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def deadlines(self) -> Iterator[float]:
        return (deadline for _, _, deadline in self.pending.values())

    def start(
        self, ping_id: str, handle: Handle, now: float, deadline: float, *, send_now: bool
    ) -> list[Effect]:
        """Track a new ping; send it at once when connected, else later (RTN13d)."""
        if send_now:
            self.pending[ping_id] = (handle, now, deadline)
            return [SendFrame(ProtocolMessage(Action.HEARTBEAT, id=ping_id))]
        self.pending[ping_id] = (handle, None, deadline)
        return []

    def on_heartbeat(self, pm: ProtocolMessage, now: float) -> list[Effect]:
        """A HEARTBEAT from the server: settles the ping with the same id (RTN13e)."""
        entry = self.pending.pop(pm.id, None) if pm.id is not None else None
        if entry is None:
            return []
        handle, sent_at, _ = entry
        if sent_at is None:  # a deferred ping cannot be answered yet
            self.pending[pm.id or ""] = entry
            return []
        return [CompletePing(handle, None, now - sent_at)]

    def send_deferred(self, now: float) -> list[Effect]:
        """CONNECTED: send every deferred ping (RTN13d)."""
        effects: list[Effect] = []
        for ping_id, (handle, sent_at, deadline) in list(self.pending.items()):
            if sent_at is None:
                self.pending[ping_id] = (handle, now, deadline)
                effects.append(SendFrame(ProtocolMessage(Action.HEARTBEAT, id=ping_id)))
        return effects

    def defer_sent(self) -> None:
        """The transport dropped: pings already sent are sent again once CONNECTED (RTN13d)."""
        for ping_id, (handle, sent_at, deadline) in list(self.pending.items()):
            if sent_at is not None:
                self.pending[ping_id] = (handle, None, deadline)

    def fail_all(self, error: AblyException) -> list[Effect]:
        """RTN13b: the connection can no longer answer; every ping fails with ``error``."""
        pings, self.pending = self.pending, {}
        return [CompletePing(handle, error) for handle, _, _ in pings.values()]

    def tick(self, now: float) -> list[Effect]:
        """RTN13c: pings past their deadline fail with a timeout."""
        if not self.pending:
            return []
        effects: list[Effect] = []
        for ping_id, (handle, _, deadline) in list(self.pending.items()):
            if now >= deadline:
                del self.pending[ping_id]
                error = AblyException("ping timed out", ErrorCode.TIMEOUT_ERROR, 500)
                effects.append(CompletePing(handle, error))
        return effects
