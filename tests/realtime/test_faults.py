"""Fault tolerance against the emulator's fault injection (RTN14, RTN15, RTL13, RTL14, RTN23)."""

from __future__ import annotations

import threading
from typing import Any

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.events import (
    ChannelState,
    ConnectionEvent,
    ConnectionState,
)
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.retry import RetryPolicy
from ably_bridge.realtime import AblyRealtime
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


class Publisher:
    """Publishes ``count`` numbered messages per channel from its own client and thread."""

    def __init__(self, client: AblyRealtime, channels: list[str], count: int) -> None:
        self.channels = [client.channels.get(name) for name in channels]
        self.count = count
        self.errors: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(self.count):
            for channel in self.channels:
                channel.publish_async("n", str(i), self._acked)

    def _acked(self, error: Any) -> None:
        if error is not None:
            self.errors.append(error)


def numbers(messages: list[Message]) -> list[int]:
    return [int(m.data) for m in messages]


def test_abrupt_drops_resume_without_loss_or_duplicates(
    make_client: MakeClient, emulator: Emulator
) -> None:
    subscriber = make_client()
    names = ["drop-a", "drop-b"]
    received = {name: Collector() for name in names}
    resumed_flags = Collector()
    for name in names:
        channel = subscriber.channels.get(name)
        channel.on("attached", resumed_flags)
        channel.subscribe(received[name])  # attaches (RTL7g) and waits
    connection_id = subscriber.connection.id
    disconnects = Collector()
    subscriber.connection.on("disconnected", disconnects)
    count = 300
    publisher = Publisher(make_client(), names, count)
    publisher.thread.start()
    for round_ in range(3):
        received[names[0]].wait_for(50 * (round_ + 1))
        assert emulator.faults.drop_connections(connection_id=connection_id) == 1
        disconnects.wait_for(round_ + 1)
        resumed_flags.wait_for(2 * (round_ + 2))  # both channels re-attached
    publisher.thread.join(10)
    for name in names:
        got = received[name].wait_for(count, timeout=10)
        assert numbers(got) == list(range(count)), f"{name}: lost, duplicated or reordered"
    assert subscriber.connection.id == connection_id  # RTN15c6: resumed
    flags = resumed_flags.items
    assert [c.resumed for c in flags[2:]] == [True] * 6
    assert publisher.errors == []


def test_refused_connects_back_off_then_suspend_then_recover(
    make_client: MakeClient, emulator: Emulator, app_id: str
) -> None:
    emulator.faults.refuse_connections(count=10_000, app_id=app_id)
    client = make_client(
        auto_connect=False,
        disconnected_retry_timeout=0.1,
        suspended_retry_timeout=0.2,
        connection_state_ttl=1.5,  # room for several refused attempts on a loaded box
    )
    changes = Collector()
    client.connection.on(changes)
    channel = client.channels.get("while-down")
    client.connect(wait=False)
    got = changes.wait_until(
        lambda items: any(c.current == ConnectionState.SUSPENDED for c in items)
    )
    retries = [c.retry_in for c in got if c.current == ConnectionState.DISCONNECTED]
    assert len(retries) >= 2
    policy = RetryPolicy(0.1)
    for attempt, delay in enumerate(retries, start=1):  # RTB1: backoff with jitter
        low, high = policy.bounds(attempt)
        assert low <= delay <= high
    suspended = got[-1]
    assert suspended.reason is not None and suspended.reason.code == 80002
    emulator.faults.clear()
    client.connection.wait_for_state("connected", timeout=5)
    channel.attach()
    assert channel.state == ChannelState.ATTACHED


def test_server_detached_reattaches(
    make_client: MakeClient, emulator: Emulator, app_id: str
) -> None:
    client = make_client()
    channel = client.channels.get("bounced")
    messages = Collector()
    states = Collector()
    channel.subscribe(messages)
    channel.attach()
    channel.on(states)
    assert emulator.faults.channel_fault(app_id, "bounced", action="detached", code=90198) == 1
    got = states.wait_for(2)
    assert [c.current for c in got] == [ChannelState.ATTACHING, ChannelState.ATTACHED]
    assert got[0].reason is not None and got[0].reason.code == 90198  # RTL13a
    channel.publish("after", "x")
    assert [m.name for m in messages.wait_for(1)] == ["after"]


def test_channel_error_fails_only_that_channel(
    make_client: MakeClient, emulator: Emulator, app_id: str
) -> None:
    client = make_client()
    doomed = client.channels.get("doomed")
    healthy = client.channels.get("healthy")
    doomed.attach()
    healthy.attach()
    failed = Collector()
    doomed.on("failed", failed)
    emulator.faults.channel_fault(app_id, "doomed", action="error", code=40160, status=401)
    change = failed.wait_for(1)[0]
    assert change.reason is not None and change.reason.code == 40160
    assert doomed.error_reason is not None and doomed.error_reason.code == 40160
    assert healthy.state == ChannelState.ATTACHED
    assert client.connection.state == ConnectionState.CONNECTED
    received = Collector()
    healthy.subscribe(received)
    healthy.publish("still", "ok")
    received.wait_for(1)
    lost = Collector()
    doomed.on_continuity_lost(lost)
    doomed.attach()  # RTL4g: attach from FAILED clears the error
    assert doomed.state == ChannelState.ATTACHED and doomed.error_reason is None
    assert lost.wait_for(1)[0].resumed is False  # the serial went with FAILED (RTL15b2)


def test_failed_resume_gives_new_connection_and_reattached_channels(
    make_client: MakeClient, emulator: Emulator
) -> None:
    """RTN15c7: new connection id, CONNECTED with the error, channels re-attached.

    The emulator restores each channel from its channelSerial even on a new
    connection (continuity is per channel since protocol v2), so the re-attach
    reports ``resumed=True`` and the messages published meanwhile arrive.
    """
    client = make_client()
    channel = client.channels.get("lost")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    old_id = client.connection.id
    connected = Collector()
    client.connection.on("connected", connected)
    attached = Collector()
    channel.on("attached", attached)
    publisher = make_client().channels.get("lost")
    emulator.faults.stall(connection_id=old_id)
    publisher.publish("during", "gap")
    assert emulator.faults.forget_connections(connection_id=old_id) == 1
    change = connected.wait_for(1)[0]
    assert change.reason is not None and change.reason.code == 80008
    assert client.connection.id not in (None, old_id)
    assert client.connection.error_reason is not None
    assert attached.wait_for(1)[0].current == ChannelState.ATTACHED
    publisher.publish("after", "x")
    assert [m.name for m in received.wait_for(2)] == ["during", "after"]


def test_failed_resume_without_channel_continuity_reports_resumed_false(
    make_client: MakeClient, emulator: Emulator
) -> None:
    """RTN15c7 + RTL3d: the channel re-attaches without RESUMED; the listener is told."""
    client = make_client()
    channel = client.channels.get("gone")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    old_id = client.connection.id
    lost = Collector()
    channel.on_continuity_lost(lost)
    publisher = make_client().channels.get("gone")
    emulator.faults.stall(connection_id=old_id)
    publisher.publish("during", "gap")
    app_id = (client.options.key_name or "").split(".")[0]
    assert emulator.faults.expire_channel_continuity(app_id, "gone") == 1
    assert emulator.faults.forget_connections(connection_id=old_id) == 1
    change = lost.wait_for(1)[0]
    assert change.resumed is False
    assert change.current == ChannelState.ATTACHED
    assert change.reason is not None and change.reason.code == 90003
    assert client.connection.id not in (None, old_id)
    publisher.publish("after", "x")
    # "during" fell in the gap: only history (until_attach) can bring it back.
    assert [m.name for m in received.wait_for(1)] == ["after"]
    backfill = channel.history(until_attach=True, direction="forwards")
    assert "during" in [m.name for m in backfill.items]


def test_silent_server_is_detected_and_resumed(make_client: MakeClient, emulator: Emulator) -> None:
    client = make_client(realtime_request_timeout=0.5)
    client.connection.wait_for_state("connected", timeout=5)
    connection_id = client.connection.id
    disconnected = Collector()
    client.connection.on("disconnected", disconnected)
    emulator.faults.stop_heartbeats(connection_id=connection_id)
    change = disconnected.wait_for(1, timeout=5)[0]  # RTN23a: maxIdleInterval + timeout
    assert change.reason is not None
    client.connection.wait_for_state("connected", timeout=5)
    assert client.connection.id == connection_id


def test_connection_update_event_on_reauth(make_client: MakeClient) -> None:
    client = make_client(use_token_auth=True)
    client.connection.wait_for_state("connected", timeout=5)
    updates = Collector()
    client.connection.on(ConnectionEvent.UPDATE, updates)
    details = client.auth.authorize()
    assert details.token
    assert updates.wait_for(1)[0].current == ConnectionState.CONNECTED
    eventually(lambda: client.auth.token_details is not None)


def test_a_peer_that_stops_reading_cannot_hold_the_session(
    make_client: MakeClient, emulator: Emulator
) -> None:
    """Sends back up behind a hung network path without blocking the session:
    RTN23a still fires, the connection resumes, and every publish lands once
    (RTN19a), while the process's other connections are served throughout."""
    client = make_client(realtime_request_timeout=0.5)
    client.connection.wait_for_state("connected", timeout=5)
    connection_id = client.connection.id
    other = make_client()  # same process: the same reactor reads both
    seen = Collector()
    watched = other.channels.get("stall-watch")
    watched.subscribe(seen)
    watched.attach()
    assert emulator.faults.stop_reading(connection_id=connection_id) == 1
    emulator.faults.stall(connection_id=connection_id)  # and it hears nothing either
    disconnected = Collector()
    client.connection.on("disconnected", disconnected)
    channel = client.channels.get("stall-publish")
    acks = Collector()
    payload = "x" * 60_000
    count = 200  # ~12 MB: more than the loopback socket buffers take
    for i in range(count):
        channel.publish_async("n", f"{i}:{payload}", acks)
    change = disconnected.wait_for(1, timeout=10)[0]  # the session's timers kept running
    assert change.reason is not None
    watched_rest = make_client().channels.get("stall-watch")
    watched_rest.publish("during", "the stall")
    assert [m.name for m in seen.wait_for(1)] == ["during"]
    client.connection.wait_for_state("connected", timeout=10)
    assert acks.wait_for(count, timeout=30) == [None] * count
    pages = channel.history(limit=1000)
    assert sorted(int(m.data.split(":", 1)[0]) for m in pages.items) == list(range(count))


def test_presence_missed_while_disconnected_arrives_on_resume_in_order(
    make_client: MakeClient, emulator: Emulator, app_id: str
) -> None:
    """Found by the bridge's chaos run: a resumed connection got back the messages it
    missed but not the presence events (RTN15c6: continuity covers both); once it did,
    the LEAVEs among them were swallowed on the re-attach - by the client's own LEAVEs
    (RTP19a) with no one left, by the sync held as ABSENT (RTP2h2a) with someone left."""
    subscriber = make_client(disconnected_retry_timeout=0.2)
    events = Collector()
    channel = subscriber.channels.get("pres-gap")
    channel.presence.subscribe(events)  # attaches (RTP6c)
    stays = make_client(client_id="m").channels.get("pres-gap")
    goes = make_client(client_id="n").channels.get("pres-gap")
    stays.presence.enter("m0")
    events.wait_for(1)
    goes.presence.enter("n0")
    events.wait_for(2)
    connection_id = subscriber.connection.id
    disconnects, reattached = Collector(), Collector()
    subscriber.connection.on("disconnected", disconnects)
    channel.on("attached", reattached)
    emulator.faults.refuse_connections(count=10_000, app_id=app_id)  # kept out until clear()
    assert emulator.faults.drop_connections(connection_id=connection_id) == 1
    disconnects.wait_until(lambda got: any(c.retry_in for c in got))  # the quick retry refused
    stays.presence.update("m1")
    goes.presence.leave("n-bye")
    stays.presence.update("m2")
    emulator.faults.clear()
    got = events.wait_until(lambda items: any(m.data == "m2" for m in items), timeout=10)
    assert [(m.client_id, m.action.name.lower(), m.data, m.id is not None) for m in got] == [
        ("m", "enter", "m0", True), ("n", "enter", "n0", True), ("m", "update", "m1", True),
        ("n", "leave", "n-bye", True), ("m", "update", "m2", True),
    ]  # fmt: skip
    assert subscriber.connection.id == connection_id  # RTN15c6: resumed
    assert reattached.wait_for(1)[0].resumed
    assert [m.client_id for m in channel.presence.get()] == ["m"]
