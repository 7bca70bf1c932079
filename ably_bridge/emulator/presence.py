"""Presence members as connections make and end them (RTP8-RTP10, RTP2b1, 11.7).

:func:`update` checks and applies the ENTER/UPDATE/LEAVE/PRESENT items a
connection sends and announces them; :func:`leave_all` removes a connection's
members with server-made LEAVEs when it closes or is gone for good. The member
set itself lives on :class:`~ably_bridge.emulator.channels.Channel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import codec
from ably_bridge.emulator.actions import P_ENTER, P_LEAVE, P_PRESENT, P_UPDATE, PRESENCE
from ably_bridge.emulator.apps import random_id
from ably_bridge.emulator.errors import error

if TYPE_CHECKING:
    from ably_bridge.emulator.connections import Connection
    from ably_bridge.emulator.state import EmulatorState


def update(
    state: EmulatorState,
    conn: Connection,
    channel_name: str,
    items: list[Any],
    msg_serial: int,
) -> None:
    """Apply PRESENCE items sent by ``conn`` and announce them; raises on rejection."""
    parsed = state.resolve_channel(conn.creds, channel_name, "presence")
    channel = conn.creds.app.channel(parsed.base)
    now = state.now_ms()
    events: list[dict[str, Any]] = []
    checked: list[tuple[dict[str, Any], str]] = []
    for item in items:
        if not isinstance(item, dict):
            raise error(40001, "presence item must be an object")
        codec.check_fields(item)
        client_id = state.effective_client_id(
            conn.client_id, conn.creds.basic, item.get("clientId")
        )
        if client_id is None:
            raise error(91000, "presence requires a clientId")  # RTP8j
        if item.get("action") not in (P_ENTER, P_UPDATE, P_LEAVE, P_PRESENT):
            raise error(40003, f"invalid presence action {item.get('action')!r}")
        checked.append((item, client_id))
    if sum(codec.data_size(i) for i, _ in checked) > state.config.max_message_size:
        raise error(40009, "presence message exceeds maxMessageSize")
    for index, (item, client_id) in enumerate(checked):
        member_key = f"{conn.id}:{client_id}"
        existing = channel.presence.get(member_key)
        action = int(item["action"])
        if action == P_LEAVE and existing is None:
            continue  # RTP10d: leaving when absent still ACKs
        if action in (P_ENTER, P_PRESENT) and existing is not None:
            action = P_UPDATE
        event = {k: v for k, v in item.items() if v is not None}
        event.update(
            action=action,
            clientId=client_id,
            connectionId=conn.id,
            timestamp=now,
            serial=channel.next_serial(),
        )
        event.setdefault("id", f"{conn.id}:{msg_serial}:{index}")
        if action == P_LEAVE and "data" not in event and existing is not None:
            for field_name in ("data", "encoding"):
                if field_name in existing:
                    event[field_name] = existing[field_name]
        channel.apply_presence(event)
        events.append(event)
    if any(m.get("connectionId") == conn.id for m in channel.presence.values()):
        conn.presence_channels.add(channel.name)
    else:
        conn.presence_channels.discard(channel.name)
    if events:
        channel.last_activity_ms = now
        state.emit(channel, PRESENCE, events, conn.id)


def leave_all(state: EmulatorState, conn: Connection, channel_name: str | None = None) -> None:
    """Remove ``conn``'s members (all channels, or one) with server-made LEAVEs (RTP2b1)."""
    app = state.apps.get(conn.app_id)
    if app is None:
        conn.presence_channels.clear()
        return
    names = [channel_name] if channel_name is not None else sorted(conn.presence_channels)
    now = state.now_ms()
    for name in names:
        channel = app.channels.get(name)
        conn.presence_channels.discard(name)
        if channel is None:
            continue
        events = []
        for member in channel.members(connection_id=conn.id):
            event = {
                k: v for k, v in member.items() if k in ("clientId", "data", "encoding", "extras")
            }
            # Not prefixed by the connectionId, so clients compare timestamps.
            event.update(
                action=P_LEAVE,
                connectionId=conn.id,
                id=f"leave{random_id(8)}:0:0",
                timestamp=now,
                serial=channel.next_serial(),
            )
            channel.apply_presence(event)
            events.append(event)
        if events:
            state.emit(channel, PRESENCE, events, None)
