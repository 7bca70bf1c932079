"""Tokens on a live connection (RTN22, RTC8, RTN15h2) and recovery by a new process (RTN16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.events import ConnectionState
from ably_bridge.rest import AblyRest

from .conftest import Collector, MakeClient, client_options


def short_token_callback(emulator: Emulator, key: str, ttl: float) -> Any:
    signer = AblyRest(key=key, endpoint=emulator.host, port=emulator.port, tls=False)

    def callback(params: Any) -> Any:
        return signer.auth.create_token_request({"ttl": ttl})

    return callback


def test_token_renewed_before_expiry_without_a_gap(
    make_client: MakeClient, emulator: Emulator, key: str
) -> None:
    subscriber = make_client(auth_callback=short_token_callback(emulator, key, 1.0))
    channel = subscriber.channels.get("tokens")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    connection_id = subscriber.connection.id
    updates, trouble = Collector(), Collector()
    subscriber.connection.on("update", updates)
    subscriber.connection.on(["disconnected", "connecting", "failed"], trouble)
    publisher = make_client().channels.get("tokens")
    sent = 0
    while len(updates.items) < 2:  # publish until the token was renewed twice (AUTH, RTC8a)
        publisher.publish("n", str(sent))
        sent += 1
        assert sent < 20_000, "no token renewal happened"
    got = received.wait_for(sent)
    assert [int(m.data) for m in got] == list(range(sent))
    assert trouble.items == []
    assert subscriber.connection.id == connection_id


def test_expired_token_disconnect_renews_and_resumes(
    make_client: MakeClient, emulator: Emulator, key: str, app_id: str
) -> None:
    subscriber = make_client(auth_callback=short_token_callback(emulator, key, 60.0))
    channel = subscriber.channels.get("expiry")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    connection_id = subscriber.connection.id
    connecting = Collector()
    subscriber.connection.on("connecting", connecting)
    publisher = make_client().channels.get("expiry")
    publisher.publish("n", "0")
    assert emulator.faults.expire_tokens(app_id=app_id) >= 1
    change = connecting.wait_for(1)[0]
    assert change.reason is not None and change.reason.code == 40142  # RTN15h2
    publisher.publish("n", "1")
    subscriber.connection.wait_for_state("connected", timeout=5)
    publisher.publish("n", "2")
    assert [m.data for m in received.wait_for(3)] == ["0", "1", "2"]
    assert subscriber.connection.id == connection_id


CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from ably_bridge.realtime import AblyRealtime
    options = json.loads(sys.argv[1])
    client = AblyRealtime(**options)
    channel = client.channels.get("recovered")
    seen = []
    done = threading.Event()
    def on_message(message):
        seen.append(message.data)
        if len(seen) == 3:
            done.set()
    channel.subscribe(on_message)
    channel.attach()
    print("READY", client.connection.id, flush=True)
    done.wait(10)
    print("KEY", client.connection.create_recovery_key(), flush=True)
    threading.Event().wait()
    """
)


def test_new_process_recovers_and_gets_missed_messages(
    make_client: MakeClient, emulator: Emulator, key: str, fmt: str
) -> None:
    options = client_options(emulator, fmt, key=key)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "READY", ready
        old_connection_id = ready[1]
        publisher = make_client().channels.get("recovered")
        for i in range(3):
            publisher.publish("n", f"before-{i}")
        line = child.stdout.readline()
        assert line.startswith("KEY "), line
        recovery_key = line.removeprefix("KEY ").strip()
    finally:
        child.send_signal(signal.SIGKILL)  # the process dies without closing
        child.wait(5)
    for i in range(3):
        publisher.publish("n", f"while-gone-{i}")
    recovered = make_client(recover=recovery_key, auto_connect=False)
    channel = recovered.channels.get("recovered")
    received = Collector()
    channel.subscribe(received, wait=False)  # attached once connected
    recovered.connect()
    assert recovered.connection.state == ConnectionState.CONNECTED
    assert recovered.connection.id == old_connection_id  # RTN16l: same connection
    channel.attach()
    publisher.publish("n", "after")
    got = [m.data for m in received.wait_for(4)]
    assert got == ["while-gone-0", "while-gone-1", "while-gone-2", "after"]
