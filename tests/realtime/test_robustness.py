"""The driver never lets bad input, slow or failing listeners, or a dead server wedge it."""

from __future__ import annotations

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.errors import AblyException
from ably_bridge.protocol.events import ConnectionState
from ably_bridge.protocol.models import Message
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


def test_failing_listener_does_not_stop_delivery(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("raising")
    good = Collector()

    def bad(_message: Message) -> None:
        raise RuntimeError("listener bug")

    channel.subscribe(bad)
    channel.subscribe(good)
    channel.attach()
    for i in range(3):
        channel.publish("n", str(i))
    assert [m.data for m in good.wait_for(3)] == ["0", "1", "2"]


def test_undecodable_frame_is_dropped_and_loop_survives(make_client: MakeClient) -> None:
    client = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    links = client._loop.links
    links._on_frame(999, b"\xc1 not msgpack")
    links._on_frame(999, "{not json")
    assert links.undecodable_frames == 2
    assert client.connection.ping() >= 0


def test_publish_timeout_raises(make_client: MakeClient, emulator: Emulator) -> None:
    client = make_client()
    channel = client.channels.get("stalled")
    channel.attach()
    emulator.faults.stall(connection_id=client.connection.id)
    with pytest.raises(AblyException) as info:
        channel.publish("n", "x", timeout=0.2)
    assert info.value.code == 50003
    emulator.faults.stall(False, connection_id=client.connection.id)


def test_read_limit_drops_the_transport_then_resumes(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("limited")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    disconnected = Collector()
    client.connection.on("disconnected", disconnected)
    client.connection.set_read_limit(2_000)
    channel.publish_async("big", "x" * 5_000)
    reason = disconnected.wait_for(1)[0].reason
    assert reason is not None and "read limit" in reason.message
    client.connection.set_read_limit(None)
    assert [m.name for m in received.wait_for(1)] == ["big"]  # replayed on resume
    eventually(lambda: client.connection.state == ConnectionState.CONNECTED)
