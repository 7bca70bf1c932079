"""``off`` with several events removes exactly those registrations (connection and channel).

Each listener is also registered for an event that ``off`` leaves alone; since a
listener sees its events in order, the first event it receives shows that the
removed ones never reached it (no "nothing happened" wait).
"""

from __future__ import annotations

from ably_bridge.protocol.events import ChannelEvent, ConnectionEvent, ConnectionState

from .conftest import Collector, MakeClient


def test_connection_off_with_events_and_no_listener(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)
    conn = client.connection
    first, second, everything = Collector(), Collector(), Collector()
    conn.on(["connecting", "connected"], first)
    conn.on("closed", first)
    conn.on(ConnectionEvent.CONNECTED, second)
    conn.on("closing", second)
    conn.on(everything)
    conn.off(["connecting", ConnectionEvent.CONNECTED])
    client.connect(timeout=5)
    conn.close(timeout=5)
    assert [c.current for c in first.wait_for(1)] == [ConnectionState.CLOSED]
    assert [c.current for c in second.wait_for(1)] == [ConnectionState.CLOSING]
    assert [c.current for c in everything.wait_for(4)] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.CLOSING,
        ConnectionState.CLOSED,
    ]


def test_connection_off_with_events_and_a_listener(make_client: MakeClient) -> None:
    client = make_client(auto_connect=False)
    conn = client.connection
    mine, other = Collector(), Collector()
    conn.on(("connecting", "connected", "closed"), mine)
    conn.on(["connecting", "connected"], other)
    conn.off(("connecting", "connected"), mine)
    client.connect(timeout=5)
    conn.close(timeout=5)
    assert [c.current for c in mine.wait_for(1)] == [ConnectionState.CLOSED]
    assert [c.current for c in other.wait_for(2)] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]


def test_channel_off_with_events(make_client: MakeClient) -> None:
    client = make_client()
    channel = client.channels.get("off-several")
    first, second, everything = Collector(), Collector(), Collector()
    channel.on(["attaching", "attached"], first)
    channel.on("detached", first)
    channel.on({"attaching", "attached", "detaching"}, second)
    channel.on(everything)
    channel.off(["attaching", ChannelEvent.ATTACHED])  # every listener of those two
    channel.off(("detaching",), second)
    channel.on("detached", second)
    channel.attach()
    channel.detach()
    assert [c.event for c in first.wait_for(1)] == [ChannelEvent.DETACHED]
    assert [c.event for c in second.wait_for(1)] == [ChannelEvent.DETACHED]
    assert [c.event for c in everything.wait_for(4)] == [
        ChannelEvent.ATTACHING,
        ChannelEvent.ATTACHED,
        ChannelEvent.DETACHING,
        ChannelEvent.DETACHED,
    ]
