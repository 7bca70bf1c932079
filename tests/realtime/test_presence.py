"""Realtime presence against the emulator: enter/update/leave, get, subscribe, history (RTP)."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import PresenceAction
from ably_bridge.protocol.events import ChannelState
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


def test_enter_update_leave_seen_by_another_client(make_client: MakeClient) -> None:
    watcher = make_client().channels.get("persisted:room")
    events = Collector()
    watcher.presence.subscribe(events)
    watcher.attach()
    member = make_client(client_id="alice").channels.get("persisted:room")
    member.presence.enter({"mood": "happy"})  # implicit attach (RTP8d)
    assert member.state == ChannelState.ATTACHED
    member.presence.update("busy")
    member.presence.leave()
    got = events.wait_for(3)
    assert [m.action for m in got] == [
        PresenceAction.ENTER,
        PresenceAction.UPDATE,
        PresenceAction.LEAVE,
    ]
    assert got[0].data == {"mood": "happy"} and got[0].client_id == "alice"
    assert got[2].data == "busy"  # RTP10a: leave keeps the last data
    history = member.presence.history(direction="forwards")
    assert [m.action for m in history.items][:3] == [
        PresenceAction.ENTER,
        PresenceAction.UPDATE,
        PresenceAction.LEAVE,
    ]


def test_get_waits_for_sync_and_filters(make_client: MakeClient) -> None:
    first = make_client(client_id="bob").channels.get("room2")
    first.presence.enter("b")
    wildcard_key_client = make_client()
    other = wildcard_key_client.channels.get("room2")
    other.presence.enter_client("carol", "c")
    other.presence.enter_client("dave", "d")
    viewer = make_client().channels.get("room2")
    members = viewer.presence.get()  # implicit attach, waits for the SYNC
    assert sorted(m.client_id for m in members) == ["bob", "carol", "dave"]
    assert viewer.presence.sync_complete
    only = viewer.presence.get(client_id="carol")
    assert [(m.client_id, m.data) for m in only] == [("carol", "c")]
    by_connection = viewer.presence.get(connection_id=wildcard_key_client.connection.id)
    assert sorted(m.client_id for m in by_connection) == ["carol", "dave"]
    other.presence.leave_client("dave")
    eventually(lambda: len(viewer.presence.get()) == 2)


def test_subscribe_by_action(make_client: MakeClient) -> None:
    viewer = make_client().channels.get("room3")
    enters, leaves = Collector(), Collector()
    viewer.presence.subscribe("enter", enters)
    viewer.presence.subscribe([PresenceAction.LEAVE], leaves)
    viewer.attach()
    member = make_client(client_id="erin").channels.get("room3")
    member.presence.enter()
    member.presence.update("x")
    member.presence.leave()
    assert [m.client_id for m in leaves.wait_for(1)] == ["erin"]
    assert len(enters.items) == 1


def test_enter_without_client_id_is_refused(make_client: MakeClient) -> None:
    client = make_client()
    client.connection.wait_for_state("connected")
    with pytest.raises(AblyException) as info:
        client.channels.get("room4").presence.enter()
    assert info.value.code == 91000


def test_members_leave_when_the_connection_closes(make_client: MakeClient) -> None:
    viewer = make_client().channels.get("room5")
    leaves = Collector()
    viewer.presence.subscribe("leave", leaves)
    viewer.attach()
    member_client = make_client(client_id="frank")
    member_client.channels.get("room5").presence.enter()
    eventually(lambda: len(viewer.presence.get()) == 1)
    member_client.close()
    assert [m.client_id for m in leaves.wait_for(1)] == ["frank"]


def test_subscribe_raw_hands_over_presence_frames_decoded_with_ids(make_client: MakeClient) -> None:
    watcher = make_client().channels.get("room-raw")
    first, second = Collector(), Collector()
    off = watcher.presence.subscribe_raw(first)
    watcher.presence.subscribe_raw(second)
    ivy = make_client(client_id="ivy")
    member = ivy.channels.get("room-raw")
    member.presence.enter({"mood": "happy"})
    member.presence.update("busy")
    frames = first.wait_for(2)
    assert all(isinstance(frame, list) and len(frame) == 1 for frame in frames)
    got = [frame[0] for frame in frames]
    assert [(m.action, m.client_id, m.data) for m in got] == [
        (PresenceAction.ENTER, "ivy", {"mood": "happy"}),
        (PresenceAction.UPDATE, "ivy", "busy"),
    ]
    assert all(m.id and m.id.startswith(f"{ivy.connection.id}:") for m in got)
    off()
    member.presence.leave()
    last = second.wait_for(3)[-1][0]
    assert (last.action, last.client_id) == (PresenceAction.LEAVE, "ivy")
    assert len(first.items) == 2  # unsubscribed before the LEAVE, which `second` already got
