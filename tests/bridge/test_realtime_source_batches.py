"""The realtime adapter with a batch-capable fake channel: one handler call per frame."""

from __future__ import annotations

from ably_bridge.bridge.realtime_source import RealtimeSource
from ably_bridge.protocol.events import ChannelState
from ably_bridge.protocol.models import Message
from tests.bridge.test_realtime_source import FakeClient, recorder


def test_one_frame_is_one_handler_call_after_its_continuity_loss() -> None:
    client = FakeClient()
    source = RealtimeSource(client)  # type: ignore[arg-type]
    handlers, seen = recorder()
    source.attach("ch", handlers)
    ch = client.chans["ch"]
    assert len(ch.message_listeners) == 1  # one listener per frame, not per message
    ch.properties.attach_serial = "s1"
    ch.frame("m1", "m2", "m3")  # before the state listener got ATTACHED
    ch.frame("m4")
    ch.emit_state(ChannelState.ATTACHED)  # same serial: not reported twice
    assert [k for k, _ in seen] == ["state", "messages", "messages"]
    assert seen[1][1] == ["m1", "m2", "m3"] and seen[2][1] == ["m4"]
    ch.properties.attach_serial = "s2"  # a new attachment: reported before its frame
    ch.frame("m5", "m6")
    assert [k for k, _ in seen[3:]] == ["state", "messages"]
    assert seen[3][1].attach_serial == "s2" and seen[4][1] == ["m5", "m6"]
    source.close()


def test_detach_removes_the_batch_listener() -> None:
    client = FakeClient()
    source = RealtimeSource(client)  # type: ignore[arg-type]
    handlers, seen = recorder()
    source.attach("ch", handlers)
    ch = client.chans["ch"]
    listener = ch.message_listeners[0]
    source.detach("ch")
    assert ch.message_listeners == []
    listener([Message("e", "x", id="late")])  # a frame already queued: silenced
    assert seen == []
    source.close()
