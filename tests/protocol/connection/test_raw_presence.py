"""The raw presence feed (DeliverRawPresence): PRESENCE frames as received, beside the map."""

from __future__ import annotations

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.actions import PresenceAction as PA
from ably_bridge.protocol.events import DeliverPresence, DeliverRawPresence, PresenceSynced
from ably_bridge.protocol.models import PresenceMessage, ProtocolMessage

from ..harness import HAS_PRESENCE, Harness, of


def frame(
    *items: PresenceMessage, action: Action = Action.PRESENCE, **kw: object
) -> ProtocolMessage:
    kw.setdefault("channel", "chat")
    return ProtocolMessage(action, presence=list(items), **kw)  # type: ignore[arg-type]


def member(action: PA, client: str, conn: str, mid: str, ts: int = 1) -> PresenceMessage:
    return PresenceMessage(action, client_id=client, connection_id=conn, id=mid, timestamp=ts)


def attached() -> Harness:
    h = Harness()
    h.establish()
    h.attach_now("chat", HAS_PRESENCE)
    return h


def test_rtp2h2a_a_leave_during_a_multi_page_sync_reaches_the_raw_feed_only() -> None:
    h = attached()
    page1 = h.receive(
        frame(member(PA.PRESENT, "a", "c1", "c1:0:0"), action=Action.SYNC, channel_serial="s1:2")
    )
    assert of(DeliverRawPresence, page1) == []  # SYNC entries are membership, not events
    leave = member(PA.LEAVE, "b", "c2", "c2:3:0", ts=30)
    effects = h.receive(frame(leave, channel_serial="x1"))
    assert effects == [DeliverRawPresence("chat", [leave])]  # RTP2h2a: no subscriber event
    stale = member(PA.PRESENT, "b", "c2", "c2:1:0", ts=10)
    last = h.receive(frame(stale, action=Action.SYNC, channel_serial="s1:", timestamp=40))
    assert of(DeliverRawPresence, last) == [] and of(PresenceSynced, last) != []
    assert of(DeliverPresence, last) == []  # the stale PRESENT lost to the ABSENT witness
    assert [m.client_id for m in h.core.channels["chat"].presence.values()] == ["a"]


def test_raw_feed_keeps_stale_events_order_and_ids_that_the_map_drops() -> None:
    h = attached()
    h.receive(frame(action=Action.SYNC))
    newer = member(PA.UPDATE, "a", "c1", "c1:5:0")
    older = member(PA.UPDATE, "a", "c1", "c1:4:0")
    enter = member(PA.ENTER, "z", "c9", "c9:0:0")
    effects = h.receive(frame(newer, older, enter))
    (raw,) = of(DeliverRawPresence, effects)
    assert [(m.id, m.action) for m in raw.messages] == [
        ("c1:5:0", PA.UPDATE), ("c1:4:0", PA.UPDATE), ("c9:0:0", PA.ENTER)
    ]  # fmt: skip
    (events,) = of(DeliverPresence, effects)
    assert [m.id for m in events.messages] == ["c1:5:0", "c9:0:0"]  # RTP2a dropped the older
    assert effects.index(raw) < effects.index(events)


def test_synthesized_leaves_and_ignored_frames_never_reach_the_raw_feed() -> None:
    h = attached()
    h.receive(frame(member(PA.ENTER, "a", "c1", "c1:0:0")))
    h.receive(frame(member(PA.PRESENT, "a", "c1", "c1:0:0"), action=Action.SYNC))
    effects = h.attached("chat", 0, timestamp=99)  # RTP19a: everyone leaves (synthesized)
    assert of(DeliverPresence, effects) != [] and of(DeliverRawPresence, effects) == []
    assert h.receive(frame()) == []  # an empty PRESENCE frame is no event
