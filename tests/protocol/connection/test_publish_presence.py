"""Publishing and presence through the core: RTL6c, RTN7, RTL3d2, RTP1, RTP5, RTP16-RTP19, RTL11."""

from __future__ import annotations

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.actions import PresenceAction as PA
from ably_bridge.protocol.events import (
    CompletePublish,
    DeliverPresence,
    DeliverRawPresence,
    EmitChannelState,
    PresenceSynced,
)
from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage
from ably_bridge.protocol.pending import PendingPublish

from ..harness import HAS_PRESENCE, RESUMED, Harness, connected_frame, err, of, options


def msgs(n: int = 1) -> list[Message]:
    return [Message("m", i) for i in range(n)]


def enter(client: str = "me") -> PresenceMessage:
    return PresenceMessage(PA.ENTER, client_id=client, data="hi")


def presence_frame(
    *items: PresenceMessage, action: Action = Action.PRESENCE, **kw: object
) -> ProtocolMessage:
    kw.setdefault("channel", "chat")
    return ProtocolMessage(action, presence=list(items), **kw)  # type: ignore[arg-type]


def member(action: PA, client: str, conn: str, mid: str, ts: int = 1) -> PresenceMessage:
    return PresenceMessage(action, client_id=client, connection_id=conn, id=mid, timestamp=ts)


def test_rtl6c1_publish_when_connected_assigns_serials_and_settles() -> None:
    h = Harness()
    h.establish()
    (send,) = h.run(h.core.publish("chat", msgs(2), "p0", h.now, params={"x": "1"}))
    frame = h.sent([send])[0]
    assert (frame.action, frame.msg_serial, frame.params, len(frame.messages)) == (
        Action.MESSAGE,
        0,
        {"x": "1"},
        2,
    )
    h.run(h.core.publish("chat", msgs(), "p1", h.now))
    effects = h.receive(
        ProtocolMessage(Action.ACK, msg_serial=0, count=1, res=[{"serials": ["a", "b"]}])
    )
    assert of(CompletePublish, effects) == [CompletePublish("p0", None, ["a", "b"])]
    effects = h.receive(ProtocolMessage(Action.NACK, msg_serial=1, count=1, error=err(40160, 401)))
    assert of(CompletePublish, effects) == [CompletePublish("p1", err(40160, 401))]


def test_rtl6c2_publish_queued_until_connected() -> None:
    h = Harness()
    assert h.run(h.core.publish("chat", msgs(), "early", 0.0)) == []  # INITIALIZED
    h.connect()
    assert h.run(h.core.publish("chat", msgs(), "p", 0.0)) == []
    effects = h.receive(connected_frame())
    assert [f.msg_serial for f in h.sent(effects) if f.action == Action.MESSAGE] == [0, 1]


def test_rtl6c4_publish_refused_by_channel_or_connection_state() -> None:
    h = Harness(options(realtime_request_timeout=1.0))
    h.establish(max_idle=0.0)
    h.attach("chat")
    h.advance(1.0)  # SUSPENDED channel
    (done,) = h.run(h.core.publish("chat", msgs(), "p", h.now))
    assert isinstance(done, CompletePublish) and done.error is not None and done.error.code == 90001
    h.close()
    (done,) = h.run(h.core.publish("other", msgs(), "p", h.now))
    assert isinstance(done, CompletePublish) and done.error is not None and done.error.code == 80017


def test_rtn7d_no_queueing_fails_on_disconnected() -> None:
    h = Harness(options(queue_messages=False))
    h.establish()
    h.run(h.core.publish("chat", msgs(), "p", h.now))
    effects = h.drop()
    assert [c.handle for c in of(CompletePublish, effects)] == ["p"]
    (done,) = h.run(h.core.publish("chat", msgs(), "q", h.now))  # CONNECTING, no queueing
    assert isinstance(done, CompletePublish) and done.error is not None
    h.drop()  # attempt fails -> DISCONNECTED (nothing left to fail)
    assert h.state == "disconnected"


def test_rtn7d_no_queueing_fails_on_attempt_failure_too() -> None:
    h = Harness(options(queue_messages=False))
    h.connect()
    h.core.queue.enqueue(PendingPublish(ProtocolMessage(Action.MESSAGE, channel="c"), "h"))
    effects = h.drop()
    assert [c.handle for c in of(CompletePublish, effects)] == ["h"]


def test_rtn7e_pending_fail_on_suspended_closed_failed() -> None:
    for how in ("suspended", "closed", "failed"):
        h = Harness()
        h.establish(ttl=0.1)
        h.run(h.core.publish("chat", msgs(), "p", h.now))
        if how == "suspended":
            h.drop()
            h.drop()
            effects = h.advance(1.0)
        elif how == "closed":
            h.close()
            effects = h.receive(ProtocolMessage(Action.CLOSED))
        else:
            effects = h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
        assert h.state == how
        (done,) = of(CompletePublish, effects)
        assert done.handle == "p" and done.error is not None


def test_rtp16a_rtp16b_rtp5b_presence_queued_on_channel_until_attached() -> None:
    h = Harness()
    h.establish()
    assert h.run(h.core.publish_presence("chat", enter(), "e0", h.now)) == []  # INITIALIZED
    h.attach("chat")
    assert h.run(h.core.publish_presence("chat", enter(), "e1", h.now)) == []  # ATTACHING
    effects = h.attached("chat", HAS_PRESENCE)
    presence = [f for f in h.sent(effects) if f.action == Action.PRESENCE]
    assert [f.msg_serial for f in presence] == [0, 1]
    (send,) = h.run(h.core.publish_presence("chat", enter(), "e2", h.now))  # ATTACHED
    assert h.sent([send])[0].msg_serial == 2


def test_rtp16c_presence_refused_in_other_states() -> None:
    h = Harness(options(queue_messages=False))
    h.establish()
    (done,) = h.run(h.core.publish_presence("chat", enter(), "e", h.now))
    assert isinstance(done, CompletePublish) and done.error is not None


def test_rtl3d2_queued_presence_waits_for_the_reattach() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    h.drop()
    h.run(h.core.publish_presence("chat", enter(), "e", h.now))  # queued connection-wide
    h.run(h.core.publish("chat", msgs(), "m", h.now))
    effects = h.receive(connected_frame())
    assert [f.action for f in h.sent(effects)] == [Action.ATTACH, Action.MESSAGE]
    effects = h.attached("chat", RESUMED)
    assert [f.action for f in h.sent(effects)] == [Action.PRESENCE]


def test_rtl11_queued_presence_fails_on_suspended_detached_failed() -> None:
    h = Harness(options(realtime_request_timeout=1.0))
    h.establish(max_idle=0.0)
    h.attach("chat")
    h.run(h.core.publish_presence("chat", enter(), "e1", h.now))
    effects = h.advance(1.0)  # attach timeout -> SUSPENDED
    assert [c.handle for c in of(CompletePublish, effects)] == ["e1"]
    h.attach("x")
    h.run(h.core.publish_presence("x", enter(), "e2", h.now))
    effects = h.receive(ProtocolMessage(Action.ERROR, channel="x", error=err(40160, 401)))
    assert [c.handle for c in of(CompletePublish, effects)] == ["e2"]


def test_rtl11a_acks_unaffected_by_channel_state() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    h.run(h.core.publish("chat", msgs(), "p", h.now))
    h.detach("chat")
    h.receive(ProtocolMessage(Action.DETACHED, channel="chat"))
    effects = h.receive(ProtocolMessage(Action.ACK, msg_serial=0, count=1))
    assert of(CompletePublish, effects) == [CompletePublish("p", None, None)]


def test_rtp1_rtp18_sync_after_attached_with_has_presence() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat", HAS_PRESENCE)
    assert h.core.channels["chat"].presence.sync_in_progress
    effects = h.receive(
        presence_frame(
            member(PA.PRESENT, "a", "c1", "c1:0:0"), action=Action.SYNC, channel_serial="s1:more"
        )
    )
    assert of(PresenceSynced, effects) == []
    effects = h.receive(
        presence_frame(
            member(PA.PRESENT, "b", "c2", "c2:0:0"),
            action=Action.SYNC,
            channel_serial="s1:",
            timestamp=5,
        )
    )
    assert of(PresenceSynced, effects) == [PresenceSynced("chat")]
    assert [m.client_id for d in of(DeliverPresence, h.effects) for m in d.messages] == ["a", "b"]
    assert h.core.channels["chat"].presence.sync_complete


def test_rtp19a_attached_without_has_presence_leaves_everyone() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "a", "c1", "c1:0:0")))
    h.receive(presence_frame(member(PA.PRESENT, "a", "c1", "c1:0:0"), action=Action.SYNC))
    effects = h.attached("chat", 0, timestamp=99)
    (leaves,) = of(DeliverPresence, effects)
    assert [(m.action, m.client_id, m.id, m.timestamp) for m in leaves.messages] == [
        (PA.LEAVE, "a", None, 99)
    ]
    assert of(PresenceSynced, effects) == [PresenceSynced("chat")]


def test_presence_ignored_unless_attached() -> None:
    h = Harness()
    h.establish()
    h.attach("chat")
    assert h.receive(presence_frame(member(PA.ENTER, "a", "c1", "c1:0:0"))) == []
    assert h.receive(presence_frame(action=Action.SYNC)) == []
    assert h.receive(presence_frame(action=Action.SYNC, channel="nobody")) == []
    h.attached("chat", HAS_PRESENCE)
    absent = member(PA.ABSENT, "a", "c1", "c1:0:0")
    assert h.receive(presence_frame(absent)) == [DeliverRawPresence("chat", [absent])]


def test_rtp17_own_members_reentered_after_non_resumed_attached() -> None:
    h = Harness()
    h.establish("conn-1")
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "me", "conn-1", "conn-1:0:0")))
    h.receive(presence_frame(member(PA.ENTER, "them", "conn-9", "conn-9:0:0")))
    assert h.attached("chat", RESUMED | HAS_PRESENCE) == []  # RTP17i: resumed, no re-entry
    effects = h.attached("chat", HAS_PRESENCE)  # continuity lost
    (frame,) = [f for f in h.sent(effects) if f.action == Action.PRESENCE]
    (msg,) = frame.presence
    assert (msg.action, msg.client_id, msg.id) == (PA.ENTER, "me", "conn-1:0:0")
    # RTP17e: a refused re-entry is an UPDATE with resumed=True and 91004
    effects = h.receive(
        ProtocolMessage(Action.NACK, msg_serial=frame.msg_serial, count=1, error=err(40160, 401))
    )
    assert not of(CompletePublish, effects)
    (update,) = of(EmitChannelState, effects)
    assert update.change.event.value == "update" and update.change.resumed
    assert update.change.reason is not None and update.change.reason.code == 91004
    assert update.change.reason.cause == err(40160, 401)
    # an ACKed re-entry produces nothing for the driver
    effects = h.attached("chat", HAS_PRESENCE)
    (frame,) = [f for f in h.sent(effects) if f.action == Action.PRESENCE]
    assert h.receive(ProtocolMessage(Action.ACK, msg_serial=frame.msg_serial, count=1)) == []


def test_rtp17g1_reentry_after_failed_resume_drops_the_id() -> None:
    h = Harness()
    h.establish("conn-1")
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "me", "conn-1", "conn-1:0:0")))
    h.drop()
    h.receive(connected_frame("conn-2", "k2", error=err(80008, 400)))
    effects = h.attached("chat", HAS_PRESENCE)
    (frame,) = [f for f in h.sent(effects) if f.action == Action.PRESENCE]
    assert frame.presence[0].id is None


def test_presence_queued_during_reattach_goes_after_the_reentry() -> None:
    """An update made while re-attaching must not be undone by the automatic re-entry."""
    h = Harness()
    h.establish("conn-1")
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "me", "conn-1", "conn-1:0:0")))
    h.drop()
    h.receive(connected_frame("conn-2", "k2", error=err(80008, 400)))  # channel re-attaching
    newer = PresenceMessage(PA.UPDATE, client_id="me", data="newer")
    assert h.run(h.core.publish_presence("chat", newer, "upd", h.now)) == []  # queued
    effects = h.attached("chat", HAS_PRESENCE)
    frames = [f for f in h.sent(effects) if f.action == Action.PRESENCE]
    assert [f.presence[0].action for f in frames] == [PA.ENTER, PA.UPDATE]
    assert frames[1].presence[0].data == "newer"
    assert frames[0].msg_serial < frames[1].msg_serial


def test_rtp5a_detached_clears_both_maps_without_events() -> None:
    h = Harness()
    h.establish("conn-1")
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "me", "conn-1", "conn-1:0:0")))
    h.detach("chat")
    effects = h.receive(ProtocolMessage(Action.DETACHED, channel="chat"))
    ch = h.core.channels["chat"]
    assert len(ch.presence) == 0 and len(ch.local_presence) == 0
    assert not of(DeliverPresence, effects)


def test_rtp5f_suspended_keeps_the_map_and_reentry_failure_dropped_when_not_connected() -> None:
    h = Harness(options(realtime_request_timeout=1.0))
    h.establish("conn-1", max_idle=0.0)
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "me", "conn-1", "conn-1:0:0")))
    h.attached("chat", HAS_PRESENCE)  # re-entry in flight
    h.receive(ProtocolMessage(Action.DETACHED, channel="chat"))
    h.advance(1.0)  # reattach times out -> SUSPENDED
    assert h.channel_state("chat") == "suspended"
    assert len(h.core.channels["chat"].presence) == 1
    effects = h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
    assert not of(CompletePublish, effects)  # the re-entry failure is not a caller's publish


def test_rtn15c6_a_resumed_reattach_keeps_the_map_so_the_replayed_leave_is_delivered() -> None:
    """Found by the bridge's chaos run: after a connection resume the channel re-attaches
    (RTL3d) and is RESUMED; the server then replays what it missed - here a member's
    LEAVE. Leaving everyone on that ATTACHED (RTP19a) made the replayed LEAVE a no-op,
    and the event was lost to subscribers."""
    h = Harness()
    h.establish("conn-1", "k1")
    h.attach_now("chat", HAS_PRESENCE, channel_serial="s1")
    h.receive(presence_frame(member(PA.ENTER, "a", "c9", "c9:0:0"), channel_serial="s2"))
    h.receive(presence_frame(member(PA.PRESENT, "a", "c9", "c9:0:0"), action=Action.SYNC))
    h.drop()
    h.receive(connected_frame("conn-1", "k2"))  # resumed (RTN15c6)
    assert h.channel_state("chat") == "attaching"  # RTL3d
    effects = h.attached("chat", RESUMED, channel_serial="s2", timestamp=99)
    assert of(DeliverPresence, effects) == [] and of(PresenceSynced, effects) == []
    leave = member(PA.LEAVE, "a", "c9", "c9:1:0", ts=5)
    (delivered,) = of(DeliverPresence, h.receive(presence_frame(leave, channel_serial="s3")))
    assert delivered.messages == [leave]
    h.drop()  # lost again before it was stable: the next attempt waits (RTB1)
    deadline = h.core.next_deadline()
    assert deadline is not None
    h.advance(deadline - h.now)
    h.receive(connected_frame("conn-1", "k3"))
    assert h.channel_state("chat") == "attaching"
    h.attached("chat", RESUMED | HAS_PRESENCE, channel_serial="s3")
    back = member(PA.ENTER, "a", "c9", "c9:2:0", ts=6)
    gone = member(PA.LEAVE, "a", "c9", "c9:3:0", ts=7)
    (replayed,) = of(DeliverPresence, h.receive(presence_frame(back, gone)))
    assert replayed.messages == [back, gone]  # not held as ABSENT by a sync (RTP2h2a)
    synced = h.receive(presence_frame(action=Action.SYNC))  # the SYNC starts itself (RTP18a)
    assert of(DeliverPresence, synced) == [] and of(PresenceSynced, synced) != []


def test_a_resumed_attached_after_a_gap_in_the_map_still_leaves_everyone() -> None:
    """SUSPENDED in between: the map may have missed events no replay covers (RTP19a)."""
    h = Harness()
    h.establish("conn-1", "k1")
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(presence_frame(member(PA.ENTER, "a", "c9", "c9:0:0")))
    h.receive(presence_frame(member(PA.PRESENT, "a", "c9", "c9:0:0"), action=Action.SYNC))
    h.core.channels["chat"].on_connection_suspended(None)
    assert h.channel_state("chat") == "suspended"
    h.attach("chat")
    (leaves,) = of(DeliverPresence, h.attached("chat", RESUMED, timestamp=99))
    assert [(m.action, m.client_id, m.id) for m in leaves.messages] == [(PA.LEAVE, "a", None)]
