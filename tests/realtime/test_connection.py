"""Connection lifecycle against the emulator: connect, events, ping, close, failures (RTN)."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.events import ConnectionEvent, ConnectionState
from ably_bridge.realtime import AblyRealtime
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


def test_connect_emits_states_and_sets_id(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)
    changes = Collector()
    client.connection.on(changes)
    assert client.connection.state == ConnectionState.INITIALIZED
    client.connect(timeout=5)
    assert client.connection.state == ConnectionState.CONNECTED
    assert client.connection.id and client.connection.key
    assert client.connection.details is not None
    seen = changes.wait_for(2)
    assert [c.current for c in seen] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert seen[1].previous == ConnectionState.CONNECTING


def test_auto_connect_and_event_filter(make_client: MakeClient) -> None:
    connected = Collector()
    client = make_client(auto_connect=False)
    client.connection.on("connected", connected)
    client.connection.connect(wait=False)
    change = connected.wait_for(1)[0]
    assert change.event == ConnectionEvent.CONNECTED


def test_auto_connect_is_connecting_when_the_constructor_returns(
    make_client: MakeClient,
) -> None:
    client = make_client()  # RTN3: auto_connect defaults to true
    assert client.connection.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED)
    client.connection.wait_for_state("connected", timeout=5)


def test_ping_and_recovery_key(make_client: MakeClient) -> None:
    client = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    assert client.connection.ping() >= 0
    key = client.connection.create_recovery_key()
    assert key is not None and client.connection.key in key
    assert "key" not in repr(client.connection).lower() or "recovery" not in repr(client.connection)


def test_close_is_clean_and_clears_id(make_client: MakeClient) -> None:
    client = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    states = Collector()
    client.connection.on(states)
    client.connection.close(timeout=5)
    assert client.connection.state == ConnectionState.CLOSED
    assert client.connection.id is None and client.connection.key is None
    assert client.connection.create_recovery_key() is None
    got = states.wait_for(2)
    assert [c.current for c in got] == [ConnectionState.CLOSING, ConnectionState.CLOSED]
    # RTN11d: connect again after CLOSED works
    client.connect(timeout=5)
    assert client.connection.state == ConnectionState.CONNECTED


def test_invalid_key_fails(make_client: MakeClient, key: str) -> None:
    name, _, _ = key.partition(":")
    client = make_client(key=f"{name}:wrong-secret", auto_connect=False)
    with pytest.raises(AblyException) as info:
        client.connect(timeout=5)
    assert client.connection.state == ConnectionState.FAILED
    assert info.value.code in (40101, 40005, 40100)
    assert client.connection.error_reason is not None


def test_secrets_stay_out_of_reprs(make_client: MakeClient, key: str) -> None:
    client = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    secret = key.partition(":")[2]
    connection_key = client.connection.key
    assert connection_key is not None
    for text in (repr(client), repr(client.connection), repr(client.channels.get("x"))):
        assert secret not in text
        assert connection_key not in text


def test_close_from_a_listener_does_not_deadlock(make_client: MakeClient) -> None:
    """Even with one callback worker, busy in this listener, a blocking close() completes."""
    client = make_client(auto_connect=False, callback_workers=1)
    done = Collector()

    def on_connected(_change: object) -> None:
        client.close(timeout=3)
        done(client.connection.state)

    client.connection.once("connected", on_connected)
    client.connect(timeout=5)
    assert done.wait_for(1)[0] == ConnectionState.CLOSED


def test_blocking_calls_after_close_raise(make_client: MakeClient) -> None:
    client: AblyRealtime = make_client()
    client.connection.wait_for_state("connected", timeout=5)
    channel = client.channels.get("after-close")
    client.close()
    with pytest.raises(AblyException):
        channel.attach(timeout=1)
    eventually(lambda: client.connection.state == ConnectionState.CLOSED)


def test_time_and_stats_go_through_rest(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)
    assert client.time() > 1_600_000_000_000
    assert isinstance(client.stats(limit=1).items, list)


def test_public_api_is_pinned() -> None:
    import ably_bridge.realtime as realtime

    assert set(realtime.__all__) == {
        "AblyRealtime",
        "ChannelEvent",
        "ChannelOptions",
        "ChannelProperties",
        "ChannelState",
        "ChannelStateChange",
        "Channels",
        "Connection",
        "ConnectionEvent",
        "ConnectionState",
        "ConnectionStateChange",
        "RealtimeAuth",
        "RealtimeChannel",
        "RealtimePresence",
        "RecoveryKeyContext",
        "decode_recovery_key",
    }
