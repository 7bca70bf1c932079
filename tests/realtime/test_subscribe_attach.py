"""``subscribe`` attaches and waits (RTL7g, RTP6d, Go's Subscribe), in JSON and msgpack.

Once ``subscribe`` returns, a message another client publishes reaches the
listener; an attach that fails (a capability that forbids the channel, a
timeout) is raised and the listener removed; a granted mode set without
subscribe logs, or raises with ``strict_mode`` (RTL7i).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.events import ChannelState
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


@pytest.fixture
def restricted_keys(emulator: Emulator) -> Iterator[dict[str, str]]:
    """Keys of one app: one allowed only ``open-room``, one that may only publish."""
    app = emulator.create_app(
        {
            "keys": [
                {},
                {"capability": '{"open-room":["*"]}'},
                {"capability": '{"*":["publish"]}'},
            ]
        }
    )
    keys = app["keys"]
    yield {"full": keys[0]["keyStr"], "open_only": keys[1]["keyStr"], "publish": keys[2]["keyStr"]}
    emulator.delete_app(app["appId"])


def test_subscribe_then_an_immediate_publish_from_another_client_is_never_missed(
    make_client: MakeClient,
) -> None:
    subscriber, publisher = make_client(), make_client()
    for index in range(20):
        name = f"no-miss-{index}"
        received = Collector()
        channel = subscriber.channels.get(name)
        channel.subscribe(received)
        assert channel.state == ChannelState.ATTACHED
        publisher.channels.get(name).publish("m", f"n{index}")
        assert [m.data for m in received.wait_for(1)] == [f"n{index}"]


def test_subscribe_batch_and_named_subscribe_wait_too(make_client: MakeClient) -> None:
    subscriber, publisher = make_client(), make_client()
    batches, named = Collector(), Collector()
    subscriber.channels.get("batch-wait").subscribe_batch(batches)
    subscriber.channels.get("named-wait").subscribe(["x", "y"], named)
    publisher.channels.get("batch-wait").publish("b", "one")
    publisher.channels.get("named-wait").publish("y", "two")
    assert [[m.data for m in batch] for batch in batches.wait_for(1)] == [["one"]]
    assert [m.data for m in named.wait_for(1)] == ["two"]


def test_presence_subscribe_then_an_immediate_enter_is_never_missed(
    make_client: MakeClient,
) -> None:
    watcher, member = make_client(), make_client(client_id="member")
    for index in range(5):
        name = f"presence-no-miss-{index}"
        events = Collector()
        channel = watcher.channels.get(name)
        channel.presence.subscribe("enter", events)
        assert channel.state == ChannelState.ATTACHED
        member.channels.get(name).presence.enter(f"n{index}")
        got = events.wait_for(1)
        assert [(p.client_id, p.data) for p in got] == [("member", f"n{index}")]


def test_a_capability_that_forbids_the_channel_is_raised(
    make_client: MakeClient, restricted_keys: dict[str, str]
) -> None:
    client = make_client(key=restricted_keys["open_only"])
    channel = client.channels.get("secret-room")
    with pytest.raises(AblyException) as raised:
        channel.subscribe(lambda _m: None)
    assert raised.value.code == ErrorCode.CAPABILITY_DENIED
    assert channel.state == ChannelState.FAILED
    presence_channel = client.channels.get("secret-presence")
    with pytest.raises(AblyException) as raised:
        presence_channel.presence.subscribe(lambda _p: None)
    assert raised.value.code == ErrorCode.CAPABILITY_DENIED
    client.channels.get("open-room").subscribe(lambda _m: None)  # allowed: returns attached


def test_attached_without_the_subscribe_mode_logs_once_or_raises_when_strict(
    make_client: MakeClient, restricted_keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    lenient = make_client(key=restricted_keys["publish"])
    channel = lenient.channels.get("publish-only")
    with caplog.at_level(logging.ERROR):
        channel.subscribe(lambda _m: None)
        channel.subscribe("other", lambda _m: None)
    warnings = [r for r in caplog.records if "without the subscribe mode" in r.getMessage()]
    assert len(warnings) == 1  # RTL7i2: once per attachment
    assert "90009" in warnings[0].getMessage()
    strict = make_client(key=restricted_keys["publish"], strict_mode=True)
    with pytest.raises(AblyException) as raised:
        strict.channels.get("publish-only").subscribe(lambda _m: None)
    assert raised.value.code == ErrorCode.SUBSCRIBE_MODE_NOT_ENABLED
    with pytest.raises(AblyException) as raised:
        strict.channels.get("publish-only").presence.subscribe(lambda _p: None)
    assert raised.value.code == ErrorCode.PRESENCE_SUBSCRIBE_MODE_NOT_ENABLED


def test_a_timed_out_subscribe_raises_and_removes_its_listener(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)  # nothing attaches before connect()
    channel = client.channels.get("timed-out")
    dropped, kept = Collector(), Collector()
    with pytest.raises(AblyException) as raised:
        channel.subscribe(dropped, timeout=0.2, inline=True)  # inline: the check below is exact
    assert raised.value.code == ErrorCode.TIMEOUT_ERROR
    with pytest.raises(AblyException):
        channel.presence.subscribe(dropped, timeout=0.2)
    client.connect()
    channel.subscribe(kept)  # the attach the timed-out call started carries on
    channel.publish("m", "after")
    channel.presence.enter_client("someone")
    assert [m.data for m in kept.wait_for(1)] == ["after"]
    channel.publish("m", "marker")
    kept.wait_for(2)  # in order: "after" went to every listener before "marker"
    assert dropped.items == []


def test_attach_false_and_wait_false(make_client: MakeClient) -> None:
    client = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    untouched = client.channels.get("untouched")
    untouched.subscribe(lambda _m: None, attach=False)
    untouched.presence.subscribe(lambda _p: None, attach=False)
    assert untouched.state == ChannelState.INITIALIZED
    background = client.channels.get("background")
    background.subscribe(lambda _m: None, wait=False)
    assert background.state in (ChannelState.INITIALIZED, ChannelState.ATTACHING)
    eventually(lambda: background.state == ChannelState.ATTACHED)
