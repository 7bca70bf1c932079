"""Channels against the emulator: attach/detach, publish/subscribe, history, cipher (RTL, RTS)."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest

from ably_bridge.encoding.crypto import CipherParams, generate_random_key
from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import ChannelMode
from ably_bridge.protocol.events import ChannelEvent, ChannelState
from ably_bridge.protocol.models import Message
from ably_bridge.realtime import ChannelOptions
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


def test_attach_detach_and_state_events(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("lifecycle")
    states = Collector()
    channel.on(states)
    channel.attach()
    assert channel.state == ChannelState.ATTACHED
    assert channel.properties.attach_serial is not None
    assert channel.attach_serial == channel.properties.attach_serial
    assert channel.modes & ChannelMode.SUBSCRIBE
    channel.detach()
    assert channel.state == ChannelState.DETACHED
    events = [c.event for c in states.wait_for(4)]
    assert events == [
        ChannelEvent.ATTACHING,
        ChannelEvent.ATTACHED,
        ChannelEvent.DETACHING,
        ChannelEvent.DETACHED,
    ]


def test_publish_and_subscribe_by_name(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("pubsub")
    everything, greets, several = Collector(), Collector(), Collector()
    channel.subscribe(everything)
    channel.subscribe("greet", greets)
    # Inline: it has run for a frame before any pool listener gets that frame, so the
    # check after off() below is exact.
    off = channel.subscribe(["a", "b"], several, inline=True)
    channel.attach()
    result = channel.publish("greet", "hello")
    assert len(result.serials) == 1
    channel.publish([Message("a", {"k": [1, 2]}), Message("b", b"\x00\x01"), Message("c", [3])])
    got = everything.wait_for(4)
    assert [(m.name, m.data) for m in got] == [
        ("greet", "hello"),
        ("a", {"k": [1, 2]}),
        ("b", b"\x00\x01"),
        ("c", [3]),
    ]
    assert got[0].connection_id == client.connection.id and got[0].id and got[0].timestamp
    assert [m.data for m in greets.wait_for(1)] == ["hello"]
    assert [m.name for m in several.wait_for(2)] == ["a", "b"]
    off()
    channel.publish("a", "after off")
    everything.wait_for(5)
    assert len(several.items) == 2


def test_listener_order_and_isolation(make_client: MakeClient) -> None:
    """A slow listener neither reorders its own events nor delays another listener."""
    client = make_client()
    channel = client.channels.get("ordering")
    release = threading.Event()
    slow, fast = Collector(), Collector()

    def slow_listener(message: Message) -> None:
        release.wait(5)
        slow(message.data)

    channel.subscribe(slow_listener)
    channel.subscribe(lambda m: fast(m.data))
    channel.attach()
    for i in range(20):
        channel.publish_async("n", str(i))
    assert fast.wait_for(20) == [str(i) for i in range(20)]
    assert slow.items == []
    release.set()
    assert slow.wait_for(20) == [str(i) for i in range(20)]


def test_publish_async_callbacks_in_order(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("async")
    channel.attach()
    acks = Collector()
    for i in range(10):
        channel.publish_async("m", str(i), lambda error, i=i: acks((i, error)))
    assert acks.wait_for(10) == [(i, None) for i in range(10)]


def test_publish_while_connecting_is_queued(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)
    channel = client.channels.get("queued")
    received = Collector()
    acks = Collector()
    channel.publish_async("early", "1", acks)
    client.connect()
    channel.subscribe(received)
    channel.attach()
    assert acks.wait_for(1) == [None]
    channel.publish("late", "2")
    assert [m.name for m in received.wait_for(1)] == ["late"]


def test_nack_raises(make_client: MakeClient, app: dict[str, Any]) -> None:
    subscribe_only = str(app["keys"][1]["keyStr"])
    client = make_client(key=subscribe_only)
    channel = client.channels.get("nacked", modes=["subscribe"])
    channel.attach()
    with pytest.raises(AblyException) as info:
        channel.publish("x", "y")
    assert info.value.code in (40160, 40165)


def test_too_large_and_bad_client_id_rejected_locally(make_client: MakeClient) -> None:
    client = make_client(client_id="me")
    channel = client.channels.get("limits")
    with pytest.raises(AblyException) as info:
        channel.publish("big", "x" * 70_000)
    assert info.value.code == 40009
    with pytest.raises(AblyException) as info:
        channel.publish(Message("m", "d", client_id="someone-else"))
    assert info.value.code == 40012


def test_history_and_until_attach(make_client: MakeClient) -> None:
    client = make_client()
    publisher = client.channels.get("persisted:hist")
    publisher.attach()
    for i in range(3):
        publisher.publish("before", [i])
    other = make_client()
    reader = other.channels.get("persisted:hist")
    reader.attach()
    publisher.publish("after", [99])
    page = reader.history(direction="forwards")
    assert [m.data for m in page.items] == [[0], [1], [2], [99]]
    page = reader.history(until_attach=True, direction="forwards")
    assert [m.data for m in page.items] == [[0], [1], [2]]
    detached = other.channels.get("persisted:never-attached")
    with pytest.raises(AblyException):
        detached.history(until_attach=True)


def test_encrypted_channel_round_trip_and_undecodable(make_client: MakeClient) -> None:
    key = generate_random_key()
    client = make_client()
    secret = client.channels.get("secret", ChannelOptions(cipher=CipherParams(key=key)))
    plain_view = make_client().channels.get("secret")
    wrong = make_client().channels.get("secret", cipher=CipherParams(key=generate_random_key()))
    got, raw, bad = Collector(), Collector(), Collector()
    secret.subscribe(got)
    plain_view.subscribe(raw)
    wrong.subscribe(bad)
    for channel in (secret, plain_view, wrong):
        channel.attach()
    secret.publish("enc", {"hidden": True})
    assert got.wait_for(1)[0].data == {"hidden": True}
    message = raw.wait_for(1)[0]
    assert message.encoding is not None and "cipher" in message.encoding
    undecodable = bad.wait_for(1)[0]  # delivered, with its encoding left (RSL6b)
    assert undecodable.decode_error is not None and undecodable.encoding
    history = secret.history()
    assert history.items[0].data == {"hidden": True}


def test_exists_iterate_release(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("rel")
    assert client.channels.exists("rel") and "rel" in client.channels
    assert [c.name for c in client.channels.iterate()] == ["rel"]
    assert client.channels.get("rel") is channel
    channel.attach()
    client.channels.release("rel")
    assert not client.channels.exists("rel")
    assert channel.state == ChannelState.DETACHED
    again = client.channels.get("rel")
    assert again is not channel and again.state == ChannelState.INITIALIZED


def test_params_and_derived_channel(make_client: MakeClient) -> None:
    client = make_client()
    base = client.channels.get("derived-base")
    base.attach()
    rewound = client.channels.get("derived-base-rewind", params={"rewind": "1"})
    rewound.attach()
    assert rewound.params.get("rewind") == "1"
    derived = client.channels.get_derived("derived-base", "name == 'keep'")
    expected = base64.b64encode(b"name == 'keep'").decode()
    assert derived.name == f"[filter={expected}]derived-base"
    kept = Collector()
    derived.subscribe(kept)
    derived.attach()
    base.publish("drop", "1")
    base.publish("keep", "2")
    assert [m.data for m in kept.wait_for(1)] == ["2"]


def test_rtl16a_set_options_reattaches_with_new_params_and_modes(make_client: MakeClient) -> None:
    client = make_client(client_id="opts-user")
    channel = client.channels.get("opts-live")
    got = Collector()
    channel.subscribe(got)
    channel.attach()
    channel.publish("before", "1")
    assert [m.name for m in got.wait_for(1)] == ["before"]
    changes = Collector()
    channel.on(changes)
    channel.set_options(ChannelOptions(params={"echo": "false"}, modes=["subscribe", "publish"]))
    assert channel.state == ChannelState.ATTACHED and changes.items == []  # resumed in place
    assert channel.params == {"echo": "false"}
    assert ChannelMode.SUBSCRIBE in channel.modes and ChannelMode.PRESENCE not in channel.modes
    channel.publish("own", "2")  # echo off: not delivered back to this connection
    make_client().channels.get("opts-live").publish("other", "3")
    assert [m.name for m in got.wait_for(2)] == ["before", "other"]
    with pytest.raises(AblyException) as info:
        channel.presence.enter("x")  # the presence mode was not asked for this time
    assert info.value.code == 40165
    # RTS3c1: channels.get with options that need a re-attach is refused...
    with pytest.raises(AblyException, match="set_options") as info:
        client.channels.get("opts-live", params={"rewind": "1"})
    assert info.value.code == 40000 and channel.params == {"echo": "false"}
    # ...while the same options, or options for a channel not attached, apply at once.
    same = ChannelOptions(params={"echo": "false"}, modes=["subscribe", "publish"])
    assert client.channels.get("opts-live", same) is channel
    idle = client.channels.get("opts-idle")
    assert client.channels.get("opts-idle", params={"rewind": "1"}) is idle
    idle.attach()
    assert idle.params == {"rewind": "1"}


def test_channel_error_for_missing_capability(make_client: MakeClient, app: dict[str, Any]) -> None:
    restricted = str(app["keys"][1]["keyStr"])
    client = make_client(key=restricted)
    ok = client.channels.get("fine")
    ok.attach()
    eventually(lambda: ok.state == ChannelState.ATTACHED)
    assert client.connection.state.value == "connected"
