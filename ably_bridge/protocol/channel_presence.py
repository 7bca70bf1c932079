"""Presence on one realtime channel (RTP1, RTP2, RTP5, RTP16b, RTP17, RTP18, RTP19).

:class:`ChannelPresence` is the presence half of
:class:`~ably_bridge.protocol.channel.ChannelCore`: the channel's presence set
(:class:`~.presence_map.PresenceMap`, RTP2) and this client's own members
(:class:`~.presence_map.LocalPresenceMap`, RTP17), the presence actions queued
until the channel is ATTACHED (RTP16b), PRESENCE and SYNC frames, the sync an
ATTACHED frame starts or the LEAVEs it implies (RTP1, RTP19a), and the automatic
re-entry of this client's members after a re-attach (RTP17g, RTP17i) with its
failure reported as an UPDATE (RTP17e). Sans I/O like the rest of the core.
"""

from __future__ import annotations

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import (
    ChannelEvent,
    ChannelState,
    ChannelStateChange,
    CompletePublish,
    DeliverPresence,
    DeliverRawPresence,
    Effect,
    EmitChannelState,
    PresenceSynced,
)
from ably_bridge.protocol.models import PresenceMessage, ProtocolMessage
from ably_bridge.protocol.pending import PendingPublish
from ably_bridge.protocol.presence_map import LocalPresenceMap, PresenceMap

__all__ = ["ChannelPresence", "ReenterHandle"]

_CS = ChannelState


class ReenterHandle:
    """Handle of an automatic presence re-entry (RTP17i); its failure is an UPDATE (RTP17e)."""

    __slots__ = ("channel", "client_id")

    def __init__(self, channel: str, client_id: str | None) -> None:
        self.channel = channel
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"ReenterHandle({self.channel!r}, {self.client_id!r})"


class ChannelPresence:
    """Presence on one channel; :class:`~ably_bridge.protocol.channel.ChannelCore` extends it."""

    # Owned by ChannelCore: read here, never written here.
    state: ChannelState
    channel_serial: str | None

    def __init__(self, name: str) -> None:
        self.name = name
        self.presence = PresenceMap()
        self.local_presence = LocalPresenceMap()
        self.presence_queue: list[PendingPublish] = []  # RTP16b
        self._reenter_due = False  # RTP17i: re-enter once the channel is ATTACHED again

    # -- frames ---------------------------------------------------------------------------
    def on_presence(self, pm: ProtocolMessage, connection_id: str | None) -> list[Effect]:
        """PRESENCE: update both maps (RTP2, RTP17b) and emit what changed.

        The frame's messages also go, unfiltered and first, to the raw feed
        (:class:`DeliverRawPresence`): the map's subscriber semantics hide a
        LEAVE during a SYNC (RTP2h2a) and stale events (RTP2a), which a
        consumer that records every event (the bridge) must still see.
        """
        if pm.channel_serial is not None:
            self.channel_serial = pm.channel_serial
        if self.state is not _CS.ATTACHED or not pm.presence:
            return []
        self._apply_local(pm.presence, connection_id)
        raw = DeliverRawPresence(self.name, list(pm.presence))
        events = self.presence.apply(pm.presence)
        return [raw, DeliverPresence(self.name, events)] if events else [raw]

    def on_sync(self, pm: ProtocolMessage, connection_id: str | None) -> list[Effect]:
        """SYNC: one page of the presence set (RTP18, RTP19); the serial is a cursor, not RTL15b."""
        if self.state is not _CS.ATTACHED:
            return []
        self._apply_local(pm.presence, connection_id)
        events, ended = self.presence.apply_sync(pm.channel_serial, pm.presence, pm.timestamp)
        effects: list[Effect] = [DeliverPresence(self.name, events)] if events else []
        if ended:
            effects.append(PresenceSynced(self.name))
        return effects

    # -- on ATTACHED (RTP1, RTP5b, RTP17, RTP19a) --------------------------------------
    def _on_presence_attached(
        self, effects: list[Effect], has_presence: bool, ts: int | None
    ) -> None:
        if has_presence:
            self.presence.start_sync()  # RTP1: a SYNC follows
            return
        leaves = self.presence.leave_all(ts)  # RTP19a
        if leaves:
            effects.append(DeliverPresence(self.name, leaves))
        effects.append(PresenceSynced(self.name))

    def take_outbound(self, connection_id: str | None) -> list[PendingPublish]:
        """Presence to publish now that the channel is ATTACHED: re-entries, then queued.

        Re-entries (RTP17g) restore what the server lost; presence the caller queued
        while the channel re-attached (RTP5b) is newer, so it goes after them and
        wins - an update or leave made during the re-attach is never undone.
        """
        if self.state != _CS.ATTACHED:
            return []
        out: list[PendingPublish] = []
        if self._reenter_due:
            self._reenter_due = False
            for msg in self.local_presence.reentries(connection_id):  # RTP17g
                frame = ProtocolMessage(Action.PRESENCE, channel=self.name, presence=[msg])
                out.append(PendingPublish(frame, ReenterHandle(self.name, msg.client_id)))
        out.extend(self.presence_queue)
        self.presence_queue = []
        return out

    def reenter_failed(self, client_id: str | None, cause: AblyException | None) -> list[Effect]:
        """RTP17e: an automatic re-enter was refused - UPDATE with resumed=True and 91004."""
        error = AblyException(
            f"automatic re-enter of presence failed for clientId {client_id!r}",
            ErrorCode.UNABLE_TO_AUTOMATICALLY_RE_ENTER_PRESENCE,
            400,
            cause=cause,
        )
        change = ChannelStateChange(self.state, self.state, ChannelEvent.UPDATE, error, True)
        return [EmitChannelState(self.name, change)]

    # -- internals ---------------------------------------------------------------------
    def _apply_local(self, messages: list[PresenceMessage], connection_id: str | None) -> None:
        local = self.local_presence
        for msg in messages:
            local.apply(msg, connection_id)

    def _fail_presence_queue(self, effects: list[Effect], error: AblyException) -> None:
        queue, self.presence_queue = self.presence_queue, []
        effects.extend(CompletePublish(entry.handle, error) for entry in queue)  # RTL11
