"""Presence membership of one channel: the presence map, SYNC, and the own-members map.

* :class:`PresenceMap` (RTP2) - members keyed by memberKey, stored with action
  PRESENT (ABSENT during a sync for members that left, RTP2h2). Newness is
  :meth:`PresenceMessage.is_newer_than` (RTP2a/b/c). :meth:`put` and
  :meth:`remove` return the event to emit, or ``None``.
* SYNC (RTP18, RTP19): :meth:`PresenceMap.start_sync` notes the current members
  as residual; members seen during the sync (by SYNC or PRESENCE, even with a
  stale id) stop being residual; :meth:`PresenceMap.end_sync` drops ABSENT
  entries and returns synthesized LEAVEs (id ``None``, timestamp "now") for the
  residual ones. :meth:`PresenceMap.apply_sync` drives this from a SYNC frame's
  ``channelSerial`` cursor ``<syncId>:<cursor>`` split at the first colon.
* :class:`LocalPresenceMap` (RTP17) - members entered by *this* connection,
  keyed by clientId, used to re-enter after a non-resumed ATTACHED.

Timestamps are Ably wall-clock milliseconds; the sans-I/O core reads no clock,
so the caller passes the "current time" for synthesized LEAVEs (the channel
uses the server timestamp of the frame that ended the sync).
"""

from __future__ import annotations

from collections.abc import Iterable

from ably_bridge.protocol.actions import PresenceAction
from ably_bridge.protocol.models import PresenceMessage

__all__ = ["LocalPresenceMap", "PresenceMap", "split_sync_cursor"]

_PRESENT = PresenceAction.PRESENT
_LEAVE = PresenceAction.LEAVE
_ABSENT = PresenceAction.ABSENT


def _with_action(
    msg: PresenceMessage, action: PresenceAction, *, keep_id: bool = True
) -> PresenceMessage:
    """A copy of ``msg`` with another action (and, for synthesized LEAVEs, no id)."""
    return PresenceMessage(
        action,
        id=msg.id if keep_id else None,
        client_id=msg.client_id,
        connection_id=msg.connection_id,
        data=msg.data,
        encoding=msg.encoding,
        extras=msg.extras,
        timestamp=msg.timestamp,
    )


def split_sync_cursor(channel_serial: str | None) -> tuple[str, str] | None:
    """``(sync_id, cursor)`` from a SYNC ``channelSerial``, split at the first colon (RTP18a).

    ``None`` when there is no serial: the SYNC is complete in one frame (RTP18c).
    A serial without a colon is treated as a sync id with an empty cursor.
    """
    if not channel_serial:
        return None
    sync_id, _, cursor = channel_serial.partition(":")
    return sync_id, cursor


class PresenceMap:
    """Members of a channel keyed by memberKey (RTP2), with SYNC bookkeeping (RTP18, RTP19)."""

    __slots__ = ("_members", "_residual", "_sync_id", "sync_complete", "sync_in_progress")

    def __init__(self) -> None:
        self._members: dict[str, PresenceMessage] = {}
        self._residual: set[str] = set()
        self._sync_id: str | None = None
        self.sync_in_progress = False
        self.sync_complete = False  # RTP13

    # -- reading ---------------------------------------------------------------
    def get(self, member_key: str) -> PresenceMessage | None:
        return self._members.get(member_key)

    def values(self) -> list[PresenceMessage]:
        """Present members (ABSENT placeholders left out)."""
        return [m for m in self._members.values() if m.action == _PRESENT]

    def __len__(self) -> int:
        return len(self._members)

    # -- RTP2 ----------------------------------------------------------------------
    def put(self, msg: PresenceMessage) -> PresenceMessage | None:
        """ENTER / UPDATE / PRESENT: store as PRESENT if newer (RTP2d); return the event or None."""
        key = msg.member_key
        self._residual.discard(key)  # seen during the sync, even if stale (RTP19)
        existing = self._members.get(key)
        if existing is not None and not msg.is_newer_than(existing):
            return None  # RTP2a
        self._members[key] = msg if msg.action == _PRESENT else _with_action(msg, _PRESENT)
        return msg  # RTP2d1: emitted with its original action

    def remove(self, msg: PresenceMessage) -> PresenceMessage | None:
        """LEAVE (RTP2h): delete (or mark ABSENT during a sync); return the event or None."""
        key = msg.member_key
        existing = self._members.get(key)
        if existing is not None and not msg.is_newer_than(existing):
            return None  # RTP2a
        if self.sync_in_progress:
            # RTP2h2a: kept as ABSENT, no event - also for a member the SYNC has
            # not listed yet, so its stale PRESENT in a later page cannot bring
            # it back (the ABSENT entry is newer, RTP2a).
            self._residual.discard(key)
            self._members[key] = _with_action(msg, _ABSENT)
            return None
        if existing is None:
            return None
        del self._members[key]  # RTP2h1b
        return msg  # RTP2h1a

    def apply(self, messages: Iterable[PresenceMessage]) -> list[PresenceMessage]:
        """Apply PRESENCE (or SYNC) messages; return the events to emit, in order."""
        events: list[PresenceMessage] = []
        for msg in messages:
            action = msg.action
            if action == _LEAVE:
                event = self.remove(msg)
            elif action == _ABSENT:
                continue  # never sent by the server; nothing to do
            else:
                event = self.put(msg)
            if event is not None:
                events.append(event)
        return events

    # -- RTP18 / RTP19 -------------------------------------------------------------
    def start_sync(self, sync_id: str | None = None) -> None:
        """A sync begins: every current member is residual until seen again (RTP19)."""
        self.sync_in_progress = True
        self._sync_id = sync_id
        self._residual = set(self._members)

    def end_sync(self, timestamp: int | None) -> list[PresenceMessage]:
        """Sync over: drop ABSENT members (RTP2h2b); synthesized LEAVEs for residuals (RTP19)."""
        if not self.sync_in_progress:
            return []  # endSync without startSync is a no-op
        leaves: list[PresenceMessage] = []
        for key in self._residual:
            member = self._members.pop(key, None)
            if member is not None and member.action == _PRESENT:
                leave = _with_action(member, _LEAVE, keep_id=False)
                leave.timestamp = timestamp
                leaves.append(leave)
        for key in [k for k, m in self._members.items() if m.action == _ABSENT]:
            del self._members[key]
        self._residual = set()
        self._sync_id = None
        self.sync_in_progress = False
        self.sync_complete = True
        return leaves

    def apply_sync(
        self, channel_serial: str | None, messages: Iterable[PresenceMessage], timestamp: int | None
    ) -> tuple[list[PresenceMessage], bool]:
        """One SYNC frame (RTP18): returns ``(events, sync_ended)``."""
        cursor = split_sync_cursor(channel_serial)
        if cursor is None:
            self.start_sync()  # RTP18c: the whole sync is in this frame
        elif not self.sync_in_progress or cursor[0] != self._sync_id:
            self.start_sync(cursor[0])  # RTP18a: a new sequence discards the old one
        events = self.apply(messages)
        if cursor is None or not cursor[1]:  # RTP18b: empty cursor ends the sync
            events.extend(self.end_sync(timestamp))
            return events, True
        return events, False

    def leave_all(self, timestamp: int | None) -> list[PresenceMessage]:
        """RTP19a: ATTACHED without HAS_PRESENCE - every member leaves (synthesized), map empty."""
        leaves = []
        for member in self._members.values():
            if member.action == _PRESENT:
                leave = _with_action(member, _LEAVE, keep_id=False)
                leave.timestamp = timestamp
                leaves.append(leave)
        self.clear()
        self.sync_complete = True
        return leaves

    def clear(self) -> None:
        """Forget everything without events (RTP5a)."""
        self._members.clear()
        self._residual = set()
        self._sync_id = None
        self.sync_in_progress = False
        self.sync_complete = False


class LocalPresenceMap:
    """Members entered by this connection, keyed by clientId (RTP17, RTP17h)."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[str, PresenceMessage] = {}

    def get(self, client_id: str) -> PresenceMessage | None:
        return self._members.get(client_id)

    def values(self) -> list[PresenceMessage]:
        return list(self._members.values())

    def __len__(self) -> int:
        return len(self._members)

    def apply(self, msg: PresenceMessage, connection_id: str | None) -> None:
        """Apply one incoming message if it belongs to ``connection_id`` (RTP17b)."""
        if connection_id is None or msg.connection_id != connection_id or msg.client_id is None:
            return
        if msg.action == _LEAVE:
            if not msg.is_synthesized():
                self._members.pop(msg.client_id, None)
        elif msg.action != _ABSENT:
            self._members[msg.client_id] = msg

    def put(self, msg: PresenceMessage) -> None:
        if msg.client_id is not None:
            self._members[msg.client_id] = msg

    def remove(self, client_id: str) -> None:
        self._members.pop(client_id, None)

    def clear(self) -> None:
        self._members.clear()

    def reentries(self, connection_id: str | None) -> list[PresenceMessage]:
        """ENTERs to publish for automatic re-entry (RTP17g, RTP17g1)."""
        return [
            PresenceMessage(
                PresenceAction.ENTER,
                id=member.id if member.connection_id == connection_id else None,
                client_id=member.client_id,
                data=member.data,
                encoding=member.encoding,
                extras=member.extras,
            )
            for member in self._members.values()
        ]
