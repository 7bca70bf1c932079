"""A server that answers CONNECTED and drops the socket gets no reconnect storm (issue 17).

The test owns a tiny WebSocket server on loopback: it completes the handshake,
sends one CONNECTED frame (JSON or msgpack, as the client asked), closes the
socket and counts the attempts. The client retries at once once (RTN15a), then
every retry waits an RTB1 delay, announced in a DISCONNECTED change with
``retry_in > 0``. The client runs on a FakeClock, so no retry can start until
the test advances it: the attempt count is exact at each announcement, and
no wall-clock time is measured. (Before the fix: 6,574 attempts in 20 s.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
from collections.abc import Iterator

import msgpack
import pytest

from ably_bridge.clock import FakeClock
from ably_bridge.protocol.events import ConnectionState
from ably_bridge.realtime import AblyRealtime

from .conftest import Collector

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONNECTED = {
    "action": 4,
    "connectionId": "flapping",
    "connectionKey": "flapping-key",
    "connectionDetails": {
        "connectionKey": "flapping-key",
        "maxIdleInterval": 15000,
        "connectionStateTtl": 120000,
    },
}


class FlappingServer:
    """Handshake, CONNECTED, close; counts the connection attempts."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.attempts = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return self.attempts

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.attempts += 1
            with contextlib.suppress(OSError), conn:
                self._flap(conn)

    def _flap(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        found = re.search(rb"sec-websocket-key:\s*(\S+)", request, re.IGNORECASE)
        if found is None:
            return
        accept = base64.b64encode(hashlib.sha1(found.group(1) + _WS_GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        if b"format=msgpack" in request.split(b"\r\n", 1)[0]:
            conn.sendall(_frame(0x2, msgpack.packb(_CONNECTED, use_bin_type=True)))
        else:
            conn.sendall(_frame(0x1, json.dumps(_CONNECTED).encode()))
        conn.shutdown(socket.SHUT_RDWR)  # dropped right after CONNECTED, no close frame

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    return head + bytes([126]) + struct.pack("!H", len(payload)) + payload


@pytest.fixture
def flapping_server() -> Iterator[FlappingServer]:
    server = FlappingServer()
    yield server
    server.close()


def test_connected_then_dropped_retries_once_at_once_then_backs_off(
    flapping_server: FlappingServer, fmt: str
) -> None:
    clock = FakeClock()  # retry timers fire only when the test advances it
    client = AblyRealtime(
        key="app.key:secret",
        endpoint="127.0.0.1",
        port=flapping_server.port,
        tls=False,
        use_binary_protocol=fmt == "msgpack",
        clock=clock,
        auto_connect=False,
    )
    waits = Collector()  # DISCONNECTED changes that announce a wait (RTB1)
    client.connection.on(
        "disconnected", lambda change: waits(change.retry_in) if change.retry_in else None
    )
    counts, delays = [], []
    try:
        client.connect(wait=False)
        for round_ in range(4):
            delays.append(waits.wait_for(round_ + 1, timeout=10)[round_])
            counts.append(flapping_server.count())  # frozen until the clock moves
            clock.advance(delays[-1])
        counts.append(waits.wait_for(5, timeout=10) and flapping_server.count())
    finally:
        client.close(timeout=2)
    assert counts == [2, 3, 4, 5, 6]  # the first attempt and one quick retry, then one per wait
    coefficients = [d / 15.0 / b for d, b in zip(delays, [1, 4 / 3, 5 / 3, 2], strict=True)]
    assert all(0.8 <= c <= 1.0 for c in coefficients), delays  # RTB1 backoff with jitter
    assert client.connection.state == ConnectionState.CLOSED
