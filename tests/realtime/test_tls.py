"""The realtime client over TLS (wss + https) against the emulator, in both formats.

The transport reads a TLS socket itself (frames parsed from decrypted reads,
non-blocking under the shared reactor, where decrypted bytes the selector
cannot see must be read at once), so this covers both ways end to end:
connect, attach, a burst of messages in order, a large message split over
several TLS records, a burst larger than the socket buffers (written through
the transport's backlog), and a clean close.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.models import Message
from ably_bridge.realtime import AblyRealtime
from ably_bridge.transports.reactor import shared_reactor
from tests.support.wait import eventually

from .conftest import FORMATS, Collector


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(tls=True, cert_dir=tmp_path_factory.mktemp("certs")) as emu:
        yield emu


@pytest.mark.parametrize("shared_reader", [True, False], ids=["reactor", "reader-thread"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_messages_over_wss(
    tls_emulator: Emulator, fmt: str, shared_reader: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = str(Path(str(tls_emulator.ca_file)))
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", ca)  # websocket-client's trust store
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    client = AblyRealtime(
        key=tls_emulator.root_key,
        endpoint=tls_emulator.host,
        tls_port=tls_emulator.port,
        tls=True,
        use_binary_protocol=fmt == "msgpack",
        realtime_request_timeout=5.0,
        shared_reader=shared_reader,
    )
    try:
        channel = client.channels.get(f"tls-{fmt}")
        got = Collector()
        channel.subscribe(got)
        channel.attach(timeout=5.0)
        big = "y" * 40_000  # several TLS records (16 KiB each)
        batch = [Message("m", f"{i}") for i in range(50)] + [Message("big", big)]
        channel.publish(batch, timeout=5.0)
        items = got.wait_for(51)
        assert [m.data for m in items[:50]] == [f"{i}" for i in range(50)]
        assert items[50].name == "big" and items[50].data == big
        # A burst larger than the socket buffers: written through the transport's
        # backlog (non-blocking TLS writes resumed by the reactor), all in order.
        reactor = shared_reactor()  # (the one that flushes backlogs, in both reading modes)
        waits = reactor.write_waits
        acks = Collector()
        payload = "z" * 60_000
        connection_id = client.connection.id
        tls_emulator.faults.stop_reading(connection_id=connection_id)  # a slow peer...
        for i in range(150):  # ~9 MB
            channel.publish_async("bulk", f"{i}:{payload}", acks)
        eventually(
            lambda: reactor.write_waits > waits, what="the burst to back up into the backlog"
        )
        tls_emulator.faults.stop_reading(False, connection_id=connection_id)  # ...catches up
        assert acks.wait_for(150, timeout=30) == [None] * 150
        bulk = got.wait_for(51 + 150, timeout=30)[51:]
        assert [int(m.data.split(":", 1)[0]) for m in bulk] == list(range(150))
        assert client.connection.state.value == "connected"
    finally:
        client.close(timeout=5.0)
    assert client.connection.state.value == "closed"
