"""Channel state machine: RTL2-RTL5, RTL3, RTL12-RTL15, RTL17 (UTS channels/*)."""

from __future__ import annotations

import pytest

from ably_bridge.protocol.actions import Action, ChannelMode, Flag
from ably_bridge.protocol.events import CompleteAttach, CompleteDetach, DeliverMessages, Effect
from ably_bridge.protocol.models import Message, ProtocolMessage

from .harness import HAS_BACKLOG, RESUMED, Harness, connected_frame, err, of, options


def connected(ttl: float = 120.0, **kw: object) -> Harness:
    h = Harness(options(realtime_request_timeout=1.0, channel_retry_timeout=2.0, **kw))
    h.establish(max_idle=0.0, ttl=ttl)
    return h


def detached(name: str = "chat", error: object = None) -> ProtocolMessage:
    return ProtocolMessage(Action.DETACHED, channel=name, error=error)  # type: ignore[arg-type]


def test_rtl4c_attach_sends_attach_and_completes() -> None:
    h = connected()
    effects = h.attach("chat", "a1")
    assert h.sent_actions(effects) == [Action.ATTACH]
    assert h.channel_state("chat") == "attaching"
    effects = h.attached("chat", HAS_BACKLOG, channel_serial="cs1", params={"rewind": "1"})
    assert of(CompleteAttach, effects) == [CompleteAttach("a1", None)]
    change = h.chan_changes("chat")[-1]
    assert (change.previous.value, change.current.value, change.resumed, change.has_backlog) == (
        "attaching",
        "attached",
        False,
        True,
    )
    ch = h.core.channels["chat"]
    assert (ch.channel_serial, ch.attach_serial, ch.params) == ("cs1", "cs1", {"rewind": "1"})
    assert h.attach("chat", "a2") == [CompleteAttach("a2", None)]  # RTL4a


def test_rtl4c1_rtl4k_rtl4l_attach_frame_fields() -> None:
    h = connected()
    h.core.channel(
        "chat", params={"rewind": "1"}, modes=int(ChannelMode.SUBSCRIBE | ChannelMode.PUBLISH)
    )
    h.core.channels["chat"].channel_serial = "prev"
    (frame,) = h.sent(h.attach("chat"))
    assert frame.channel_serial == "prev" and frame.params == {"rewind": "1"}
    assert frame.flags == int(Flag.SUBSCRIBE | Flag.PUBLISH)
    h.attached("chat", int(Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE))
    assert h.core.channels["chat"].modes == ChannelMode.SUBSCRIBE | ChannelMode.PRESENCE_SUBSCRIBE
    assert h.core.channels["chat"].params == {}  # RTL4k1


def test_rtl4h_attach_while_attaching_sends_one_attach() -> None:
    h = connected()
    h.attach("chat", "a1")
    assert h.attach("chat", "a2") == []
    effects = h.attached("chat")
    assert [c.handle for c in of(CompleteAttach, effects)] == ["a1", "a2"]
    assert h.sent_actions().count(Action.ATTACH) == 1


def test_rtl4h_attach_while_detaching_waits_then_attaches() -> None:
    h = connected()
    h.attach_now("chat")
    h.detach("chat", "d1")
    assert h.attach("chat", "a2") == []
    effects = h.receive(detached())
    assert of(CompleteDetach, effects) == [CompleteDetach("d1", None)]
    assert h.sent_actions(effects) == [Action.ATTACH]
    effects = h.attached("chat")
    assert of(CompleteAttach, effects) == [CompleteAttach("a2", None)]
    assert h.sent_actions().count(Action.ATTACH) == 2


def test_rtl5i_detach_while_attaching_waits_then_detaches() -> None:
    h = connected()
    h.attach("chat", "a1")
    assert h.detach("chat", "d1") == []
    effects = h.attached("chat")
    assert of(CompleteAttach, effects) == [CompleteAttach("a1", None)]
    assert h.sent_actions(effects) == [Action.DETACH]
    effects = h.receive(detached())
    assert of(CompleteDetach, effects) == [CompleteDetach("d1", None)]
    assert h.channel_state("chat") == "detached"


def test_queued_operations_are_superseded() -> None:
    h = connected()
    h.attach("chat", "a1")
    h.detach("chat", "d1")
    effects = h.attach("chat", "a2")  # the queued detach is dropped
    assert of(CompleteDetach, effects)[0].error is not None
    h.attached("chat")
    assert h.channel_state("chat") == "attached"
    h.detach("chat", "d2")
    h.attach("chat", "a3")
    effects = h.detach("chat", "d3")  # the queued attach is dropped
    assert of(CompleteAttach, effects)[0].handle == "a3"
    assert h.detach("chat", "d4") == []  # RTL5i
    effects = h.receive(detached())
    assert [c.handle for c in of(CompleteDetach, effects)] == ["d2", "d3", "d4"]


def test_rtl4g_attach_from_failed_clears_error() -> None:
    h = connected()
    h.attach_now("chat")
    h.receive(ProtocolMessage(Action.ERROR, channel="chat", error=err(40160, 401)))
    assert h.core.channels["chat"].error_reason is not None
    h.attach("chat")
    assert h.core.channels["chat"].state.value == "attaching"
    assert h.core.error_reason is None and not h.chan_changes("chat")[-1].reason
    h.attached("chat")
    assert h.channel_state("chat") == "attached"


@pytest.mark.parametrize("how", ["closed", "failed", "suspended"])
def test_rtl4b_attach_refused_by_connection_state(how: str) -> None:
    h = connected(ttl=0.1)
    if how == "closed":
        h.close()
        h.receive(ProtocolMessage(Action.CLOSED))
    elif how == "failed":
        h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
    else:
        h.drop()
        h.drop()
        h.advance(1.0)
    assert h.state == how
    (done,) = h.attach("chat", "a")
    assert isinstance(done, CompleteAttach) and done.error is not None


def test_rtl4i_attach_waits_for_connected() -> None:
    h = Harness()
    assert h.attach("chat") == h.last and h.sent_actions() == []
    assert h.channel_state("chat") == "attaching"
    h.connect()
    effects = h.receive(connected_frame())
    assert h.sent_actions(effects) == [Action.ATTACH]
    events = [type(e).__name__ for e in effects]
    assert events.index("EmitConnectionState") > events.index("SendFrame")  # RTL3d1


def test_rtl4f_attach_timeout_suspends_then_rtl13b_retries() -> None:
    h = connected()
    h.attach("chat", "a")
    assert h.core.next_deadline() == pytest.approx(1.0)
    effects = h.advance(1.0)
    assert h.channel_state("chat") == "suspended"
    assert of(CompleteAttach, effects)[0].error is not None
    assert h.core.channels["chat"].error_reason is not None
    assert h.core.next_deadline() == pytest.approx(3.0)  # channel_retry_timeout * 1 * 1.0
    effects = h.advance(2.0)
    assert h.sent_actions(effects) == [Action.ATTACH] and h.channel_state("chat") == "attaching"
    h.advance(1.0)  # timeout again
    assert h.core.next_deadline() == pytest.approx(4.0 + 2.0 * 4 / 3)


def test_rtl13a_server_detached_reattaches_at_once() -> None:
    h = connected()
    h.attach_now("chat")
    effects = h.receive(detached(error=err(90198, 500, "Detached")))
    assert h.sent_actions(effects) == [Action.ATTACH]
    change = h.chan_changes("chat")[-1]
    assert change.current.value == "attaching" and change.reason == err(90198, 500, "Detached")
    h.attached("chat")
    assert h.channel_state("chat") == "attached"


def test_rtl13b_detached_while_attaching_suspends_and_rtl13c_cancels() -> None:
    h = connected()
    h.attach("chat")
    h.receive(detached(error=err(90198, 500)))
    assert h.channel_state("chat") == "suspended"
    h.receive(detached())  # from SUSPENDED: RTL13a reattach
    assert h.channel_state("chat") == "attaching"
    h.receive(detached())
    assert h.channel_state("chat") == "suspended"
    h.drop()  # RTL13c: connection no longer CONNECTED - the retry is cancelled
    h.advance(100.0)
    assert h.channel_state("chat") in ("suspended", "attaching")


def test_rtl13a_detached_while_detaching_is_the_reply() -> None:
    h = connected()
    h.attach_now("chat")
    h.detach("chat")
    h.receive(detached())
    assert h.chan_events("chat")[-1] == "detached"
    assert h.receive(detached()) == []  # ignored when already DETACHED


def test_rtl5a_rtl5b_rtl5j_rtl5l_detach_rules() -> None:
    h = connected()
    assert h.detach("chat", "d") == [CompleteDetach("d", None)]  # INITIALIZED
    h.attach_now("chat")
    h.receive(ProtocolMessage(Action.ERROR, channel="chat", error=err(40160, 401)))
    (failed,) = h.detach("chat", "d")
    assert isinstance(failed, CompleteDetach) and failed.error is not None  # RTL5b
    h2 = connected()
    h2.attach("chat")
    h2.advance(1.0)
    assert h2.channel_state("chat") == "suspended"
    h2.detach("chat", "d")
    assert h2.channel_state("chat") == "detached"  # RTL5j
    h3 = Harness()
    h3.attach("chat")
    effects = h3.detach("chat", "d")
    assert h3.channel_state("chat") == "detached"  # RTL5l
    assert CompleteDetach("d", None) in effects
    assert of(CompleteAttach, effects)[0].error is not None


def test_rtl5f_detach_timeout_returns_to_attached() -> None:
    h = connected()
    h.attach_now("chat")
    h.detach("chat", "d")
    effects = h.advance(1.0)
    assert h.channel_state("chat") == "attached"
    assert of(CompleteDetach, effects)[0].error is not None


def test_rtl5k_attached_while_detaching_or_detached_sends_detach() -> None:
    h = connected()
    h.attach_now("chat")
    h.detach("chat")
    effects = h.attached("chat")
    assert h.sent_actions(effects) == [Action.DETACH]
    h.receive(detached())
    effects = h.attached("chat")
    assert h.sent_actions(effects) == [Action.DETACH] and h.channel_state("chat") == "detaching"


def test_rtl12_additional_attached() -> None:
    h = connected()
    h.attach_now("chat", channel_serial="s1")
    assert h.attached("chat", RESUMED, channel_serial="s2") == []  # nothing emitted
    assert h.core.channels["chat"].attach_serial == "s1"  # RTL15c: not from a resumed ATTACHED
    effects = h.attached("chat", 0, error=err(91000, 400, "lost"), channel_serial="s3")
    (change,) = h.chan_changes("chat", effects)
    assert (change.event.value, change.previous.value, change.resumed) == (
        "update",
        "attached",
        False,
    )
    assert change.reason == err(91000, 400, "lost")
    assert h.core.channels["chat"].attach_serial == "s3"


def test_rtl2f_resumed_flag_on_attached_event() -> None:
    h = connected()
    h.attach("chat")
    h.attached("chat", RESUMED)
    assert h.chan_changes("chat")[-1].resumed is True


def test_rtl14_channel_error_fails_only_that_channel() -> None:
    h = connected()
    h.attach_now("other")
    h.attach("chat", "a")
    effects = h.receive(ProtocolMessage(Action.ERROR, channel="chat", error=err(40160, 401)))
    assert h.channel_state("chat") == "failed" and h.channel_state("other") == "attached"
    assert of(CompleteAttach, effects)[0].error == err(40160, 401)
    assert h.core.next_deadline() is None  # timers cancelled
    assert h.receive(ProtocolMessage(Action.ERROR, channel="unknown")) == []
    h.receive(ProtocolMessage(Action.ERROR, channel="other"))  # no error: a default one
    assert h.core.channels["other"].error_reason is not None


def test_rtl14_channel_error_completes_pending_detach_with_error() -> None:
    h = connected()
    h.attach_now("chat")
    h.detach("chat", "d")
    effects = h.receive(ProtocolMessage(Action.ERROR, channel="chat", error=err(40160, 401)))
    assert of(CompleteDetach, effects) == [CompleteDetach("d", err(40160, 401))]


def test_rtl15b_serials_from_message_presence_and_annotation() -> None:
    h = connected()
    h.attach_now("chat", channel_serial="a")
    ch = h.core.channels["chat"]
    h.receive(
        ProtocolMessage(
            Action.MESSAGE, channel="chat", channel_serial="m1", messages=[Message("x")]
        )
    )
    assert ch.channel_serial == "m1"
    h.receive(ProtocolMessage(Action.PRESENCE, channel="chat", channel_serial="p1"))
    assert ch.channel_serial == "p1"
    h.receive(ProtocolMessage(Action.ANNOTATION, channel="chat", channel_serial="n1"))
    h.receive(ProtocolMessage(Action.OBJECT, channel="nobody", channel_serial="zz"))
    assert ch.channel_serial == "n1"
    h.receive(ProtocolMessage(Action.MESSAGE, channel="chat"))  # not populated: unchanged
    h.receive(ProtocolMessage(Action.SYNC, channel="chat", channel_serial="sync:"))  # a cursor
    assert ch.channel_serial == "n1"
    h.detach("chat")
    h.receive(detached())
    assert ch.channel_serial is None  # RTL15b2


def test_rtl15b2_serial_kept_on_suspended() -> None:
    h = connected()
    h.attach_now("chat", channel_serial="keep")
    h.receive(detached())
    h.advance(1.0)
    assert h.channel_state("chat") == "suspended"
    assert h.core.channels["chat"].channel_serial == "keep"


def test_rtl17_messages_only_delivered_when_attached() -> None:
    h = connected()
    frame = ProtocolMessage(Action.MESSAGE, channel="chat", messages=[Message("x")])
    h.attach("chat")
    assert h.receive(frame) == []
    h.attached("chat")
    (delivery,) = h.receive(frame)
    assert isinstance(delivery, DeliverMessages)
    assert delivery.channel == "chat" and delivery.messages == [Message("x")]


def test_rtl3e_disconnected_leaves_channels_alone_and_rtl3d_reattaches() -> None:
    h = connected()
    h.attach_now("a", channel_serial="sa")
    h.attach("b")
    h.attach_now("c")
    h.detach("c")
    h.attach("d")
    h.advance(1.0)  # d: attach timeout -> SUSPENDED (and c's detach times out too)
    h.detach("c")
    h.attach_now("e")
    h.detach("e")
    h.receive(detached("e"))
    h.drop()
    assert h.channel_state("a") == "attached" and h.channel_state("b") == "suspended"
    effects = h.receive(connected_frame())
    attach_frames = {f.channel: f for f in h.sent(effects) if f.action == Action.ATTACH}
    assert set(attach_frames) == {"a", "b", "d"}
    assert attach_frames["a"].channel_serial == "sa"
    assert [f.channel for f in h.sent(effects) if f.action == Action.DETACH] == ["c"]  # RTN19b
    assert h.channel_state("e") == "detached"


def test_rtl3c_rtl3b_rtl3a_connection_side_effects() -> None:
    h = connected(ttl=0.5)
    h.attach_now("att")
    h.attach("ing")
    h.attach_now("det")
    h.detach("det", "d")
    h.drop()
    h.drop()
    effects = h.advance(1.0)
    assert h.state == "suspended"
    assert (h.channel_state("att"), h.channel_state("ing"), h.channel_state("det")) == (
        "suspended",
        "suspended",
        "detached",
    )
    assert h.chan_changes("att")[-1].reason is not None
    assert CompleteDetach("d", None) in effects
    h.close()
    assert h.channel_state("att") == "detached"
    h2 = connected()
    h2.attach_now("x")
    h2.attach_now("y")
    h2.detach("y")
    h2.receive(detached("y"))
    h2.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
    assert (h2.channel_state("x"), h2.channel_state("y")) == ("failed", "detached")


def test_stray_attached_on_initialized_channel_is_ignored() -> None:
    h = connected()
    h.core.channel("chat")
    assert h.attached("chat") == []
    assert h.channel_state("chat") == "initialized"
    assert h.attached("unknown") == []
    assert h.receive(detached("unknown")) == []


def test_release_forgets_the_channel() -> None:
    h = connected()
    h.attach("chat")
    h.core.release("chat")
    assert "chat" not in h.core.channels
    assert h.core.next_deadline() is None
    assert repr(h.core.channel("x")) == "ChannelCore('x', state=initialized)"


# -- RTL16: set_options ------------------------------------------------------------------
SUBSCRIBE_ONLY = int(ChannelMode.SUBSCRIBE)


def set_options(
    h: Harness, name: str, handle: object, params: dict[str, str], modes: int = 0
) -> list[Effect]:
    return h.run(h.core.set_channel_options(name, params, modes, handle, h.now))


def test_rtl16a_new_modes_on_an_attached_channel_reattach_and_wait_for_attached() -> None:
    h = connected()
    h.attach_now("chat", channel_serial="cs1")
    effects = set_options(h, "chat", "o1", {"echo": "false"}, SUBSCRIBE_ONLY)
    (frame,) = h.sent(effects)
    assert frame.action == Action.ATTACH and frame.channel_serial == "cs1"  # continuity asked
    assert frame.params == {"echo": "false"} and frame.flags == int(Flag.SUBSCRIBE)
    assert of(CompleteAttach, effects) == [] and h.channel_state("chat") == "attached"
    effects = h.attached("chat", RESUMED | int(Flag.SUBSCRIBE), params={"echo": "false"})
    assert of(CompleteAttach, effects) == [CompleteAttach("o1", None)]
    assert h.chan_events("chat", effects) == []  # resumed: no UPDATE, still ATTACHED
    ch = h.core.channels["chat"]
    assert ch.modes == ChannelMode.SUBSCRIBE and ch.params == {"echo": "false"}


def test_rtl16a_a_reattach_that_loses_continuity_is_an_update() -> None:
    h = connected()
    h.attach_now("chat")
    set_options(h, "chat", "o1", {"rewind": "1"})
    effects = h.attached("chat", 0)
    assert h.chan_events("chat", effects) == ["update"]  # RTL12
    assert of(CompleteAttach, effects) == [CompleteAttach("o1", None)]


def test_rtl16_unchanged_options_or_a_channel_not_attached_settle_at_once() -> None:
    h = connected()
    h.attach_now("chat")
    assert set_options(h, "chat", "same", {}) == [CompleteAttach("same", None)]
    effects = set_options(h, "idle", "later", {"rewind": "1"}, SUBSCRIBE_ONLY)
    assert effects == [CompleteAttach("later", None)] and h.sent(effects) == []
    (frame,) = h.sent(h.attach("idle"))  # the next attach carries them
    assert frame.params == {"rewind": "1"} and frame.flags == int(Flag.SUBSCRIBE)


def test_rtl16a_while_attaching_the_attach_is_sent_again_and_both_settle() -> None:
    h = connected()
    h.attach("chat", "a1")
    effects = set_options(h, "chat", "o1", {"rewind": "1"})
    assert h.sent_actions(effects) == [Action.ATTACH]
    effects = h.attached("chat")
    assert [c.handle for c in of(CompleteAttach, effects)] == ["a1", "o1"]


def test_rtl16a_while_disconnected_the_reattach_on_connected_carries_the_options() -> None:
    h = connected()
    h.attach_now("chat")
    h.drop()
    effects = set_options(h, "chat", "o1", {"rewind": "1"})
    assert h.sent(effects) == [] and of(CompleteAttach, effects) == []
    effects = h.receive(connected_frame())
    (frame,) = [f for f in h.sent(effects) if f.action == Action.ATTACH]
    assert frame.params == {"rewind": "1"}
    assert of(CompleteAttach, h.attached("chat", RESUMED)) == [CompleteAttach("o1", None)]


def test_rtl16a_no_answer_fails_the_call_and_leaves_the_channel_attached() -> None:
    h = connected()
    h.attach_now("chat")
    set_options(h, "chat", "o1", {"rewind": "1"})
    effects = h.advance(1.0)  # realtime_request_timeout
    (done,) = of(CompleteAttach, effects)
    assert done.handle == "o1" and done.error is not None and done.error.code == 90007
    assert h.channel_state("chat") == "attached" and h.chan_events("chat", effects) == []


def test_rtl16a_a_channel_error_fails_the_pending_call() -> None:
    h = connected()
    h.attach_now("chat")
    set_options(h, "chat", "o1", {}, SUBSCRIBE_ONLY)
    effects = h.receive(
        ProtocolMessage(Action.ERROR, channel="chat", error=err(40160, 401, "denied"))
    )
    (done,) = of(CompleteAttach, effects)
    assert done.error is not None and done.error.code == 40160
    assert h.channel_state("chat") == "failed"


# -- RTL18: a delta that cannot be decoded --------------------------------------------------
def test_rtl18_a_failed_delta_reattaches_from_the_last_decoded_frame() -> None:
    h = connected()
    h.attach_now("chat", channel_serial="s1")
    h.receive(ProtocolMessage(Action.MESSAGE, channel="chat", channel_serial="s2", messages=[]))
    failure = err(40018, 400, "delta could not be applied")
    effects = h.run(h.core.decode_failed("chat", "s1", failure, h.now))
    (frame,) = h.sent(effects)
    assert frame.action == Action.ATTACH and frame.channel_serial == "s1"  # RTL18c
    (change,) = h.chan_changes("chat", effects)
    assert change.current.value == "attaching" and change.reason is failure  # RTL18b
    # Frames until the server answers are not delivered (RTL17), then it goes on.
    late = ProtocolMessage(Action.MESSAGE, channel="chat", messages=[Message("m", "x")])
    assert of(DeliverMessages, h.receive(late)) == []
    h.attached("chat", RESUMED, channel_serial="s1")
    assert h.channel_state("chat") == "attached"


def test_rtl18_without_a_decoder_the_channel_fails_and_other_states_are_left_alone() -> None:
    h = connected()
    h.attach_now("chat")
    missing = err(40019, 400, "no vcdiff decoder")
    effects = h.run(h.core.decode_failed("chat", None, missing, h.now))
    assert h.channel_state("chat") == "failed" and h.sent(effects) == []
    assert h.core.channels["chat"].error_reason is missing
    assert h.run(h.core.decode_failed("chat", None, missing, h.now)) == []  # not attached
    assert h.run(h.core.decode_failed("unknown", None, missing, h.now)) == []
