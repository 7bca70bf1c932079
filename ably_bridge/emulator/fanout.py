"""Fan-out: channel events from the state to every attached session entitled to them.

:class:`Attachment` is one session's attachment to one channel name;
:class:`Hub` keeps the live sessions and receives every MESSAGE, PRESENCE and
ANNOTATION event from the state (its ``on_event`` hook), encodes and frames
each once per (format, channel name) and hands the shared frame to every
attachment whose modes, echo setting, own presence (RTP17a) and
derived-channel filter (RTS5) admit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import actions as p
from ably_bridge.emulator import channel_ops, codec
from ably_bridge.emulator.channels import Channel
from ably_bridge.emulator.context import Runtime
from ably_bridge.emulator.meta import MetaEvents
from ably_bridge.emulator.outbox import Flusher, ws_frame
from ably_bridge.emulator.vcdiff import DeltaStream

if TYPE_CHECKING:
    from ably_bridge.emulator.realtime import Session


@dataclass(eq=False)
class Attachment:
    """One session's attachment to one channel name (qualified as the client sent it)."""

    session: Session
    name: str
    base: str
    modes: int
    echo: bool = True
    filter_expr: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    deltas: DeltaStream | None = None  # params delta=vcdiff (PC3)
    requested: int = 0  # the modes asked for (0: the defaults), granted again after AUTH


_ITEMS_FIELD = {p.MESSAGE: "messages", p.PRESENCE: "presence", p.ANNOTATION: "annotations"}


class Hub:
    """Live sessions by connectionId, and fan-out of channel events to them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sessions: dict[str, Session] = {}
        self.comet: dict[str, Any] = {}  # connectionKey -> CometSession (comet.py)
        self.flusher = Flusher()
        self.meta = MetaEvents(runtime.state)
        self.delivered = 0

    def attach(self, channel: Channel, att: Attachment) -> None:
        """Register ``att`` on ``channel`` (replacing the same connection's same name)."""
        assert att.session.conn is not None
        first = not channel.attachments
        channel.attachments[(att.session.conn.id, att.name)] = att
        self.meta.attached(channel, att, first)

    def detach(self, channel: Channel | None, conn_id: str, name: str) -> None:
        """Remove one connection's attachment to ``name`` from ``channel``, if there."""
        if channel is None or channel.attachments.pop((conn_id, name), None) is None:
            return
        self.meta.detached(channel, last=not channel.attachments)

    def on_event(
        self, channel: Channel, action: int, items: list[dict[str, Any]], origin: str | None
    ) -> None:
        """Fan one MESSAGE/PRESENCE/ANNOTATION event out to the attached sessions (RTL7,
        RTP6, RTAN4)."""
        if not channel.attachments:
            return
        key = _ITEMS_FIELD[action]
        now = self.runtime.state.now_ms()
        if action == p.PRESENCE:
            self.meta.occupancy_changed(channel)
        cache: dict[tuple[str, str], bytes] = {}
        for att in list(channel.attachments.values()):
            session: Session = att.session
            conn = session.conn
            if conn is None:
                continue
            own = conn.id == origin
            if action == p.MESSAGE:
                if not att.modes & p.MODE_SUBSCRIBE:
                    continue
                if own and not (att.echo and conn.echo):
                    continue
                selected = items
                if att.filter_expr is not None:
                    selected = [m for m in items if channel_ops.filter_matches(att.filter_expr, m)]
                    if not selected:
                        continue
            elif action == p.ANNOTATION:
                if not att.modes & p.MODE_ANNOTATION_SUBSCRIBE:
                    continue
                if own and not (att.echo and conn.echo):
                    continue
                selected = items
            else:
                # RTP17a: own presence is delivered regardless of mode.
                mine = any(i.get("connectionId") == conn.id for i in items)
                if not (att.modes & p.MODE_PRESENCE_SUBSCRIBE or mine):
                    continue
                selected = items
            if att.deltas is not None and action == p.MESSAGE:
                selected = att.deltas.messages(selected, session.fmt)  # its own frame
            cache_key = (session.fmt, att.name)
            frame = cache.get(cache_key) if selected is items else None
            if frame is None:
                pm: dict[str, Any] = {
                    "action": action,
                    "channel": att.name,
                    "timestamp": now,
                    # RTL15b: the channel's position after this event; a changed
                    # message or a summary keeps its own older serial.
                    "channelSerial": channel.current_serial,
                    key: selected,
                }
                if origin is not None:
                    pm["connectionId"] = origin
                    first_id = str(items[0].get("id", ""))
                    if first_id.count(":") >= 2:
                        pm["id"] = first_id.rsplit(":", 1)[0]
                frame = ws_frame(codec.encode(pm, session.fmt))
                if selected is items:
                    cache[cache_key] = frame
            session.out.send(frame)
            self.delivered += len(selected)
