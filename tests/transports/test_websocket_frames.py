"""RFC 6455 framing on the read side: :class:`FrameReader`, and the transport on a raw server.

The raw server speaks WebSocket by hand, so a test controls every byte: several
frames in one TCP write, fragments, pings, close frames, oversized headers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from ably_bridge import shortcuts
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.transports.websocket import WebSocketTransport
from ably_bridge.transports.wsframes import FrameError, FrameReader

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
WAIT = 5.0


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame as a server (unmasked) or client (masked) would send it."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


# -- FrameReader ------------------------------------------------------------------------------
def test_many_frames_in_one_feed_come_out_in_order() -> None:
    data = frame(TEXT, b'{"a":1}') + frame(BINARY, b"\x81\xa1a\x01") + frame(TEXT, b"")
    assert FrameReader().feed(data) == [(TEXT, b'{"a":1}'), (BINARY, b"\x81\xa1a\x01"), (TEXT, b"")]


def test_frames_split_at_every_byte_reassemble() -> None:
    payloads = [b"x" * 5, b"y" * 300, b"z" * 70_000]  # 7-bit, 16-bit and 64-bit lengths
    data = b"".join(frame(BINARY, p) for p in payloads)
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    step = 997  # a prime, so splits land inside headers and payloads alike
    for start in range(0, len(data), step):
        out.extend(reader.feed(data[start : start + step]))
    assert out == [(BINARY, p) for p in payloads]
    reader = FrameReader()
    head = frame(BINARY, payloads[1])
    assert [reader.feed(head[i : i + 1]) for i in range(len(head))][-1] == [(BINARY, payloads[1])]


def test_a_masked_frame_is_unmasked() -> None:
    payload = bytes(range(256)) * 3
    assert FrameReader().feed(frame(BINARY, payload, mask=b"\x01\x80\xff\x10")) == [
        (BINARY, payload)
    ]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    data = (
        frame(TEXT, b"hel", fin=False)
        + frame(PING, b"p")
        + frame(CONT, b"lo ", fin=False)
        + frame(CONT, b"world")
        + frame(BINARY, b"next")
    )
    assert FrameReader().feed(data) == [(PING, b"p"), (TEXT, b"hello world"), (BINARY, b"next")]


@pytest.mark.parametrize(
    "data",
    [
        frame(CONT, b"orphan"),
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        bytes([0x80 | 0x40 | TEXT, 1]) + b"x",  # RSV1 without an extension
        frame(0x3, b"reserved opcode"),
        frame(PING, b"p", fin=False),
        frame(PING, b"p" * 126),
    ],
    ids=["orphan-continuation", "interleaved-message", "rsv-bit", "unknown-opcode",
         "fragmented-control", "long-control"],
)  # fmt: skip
def test_protocol_violations_raise(data: bytes) -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(data)


def test_the_limit_refuses_a_frame_as_soon_as_its_header_arrives() -> None:
    header_only = frame(BINARY, b"x" * 5000)[:4]
    with pytest.raises(FrameError, match="read limit of 1000"):
        FrameReader().feed(header_only, limit=1000)
    reader = FrameReader()
    first = reader.feed(frame(TEXT, b"a" * 600, fin=False), limit=1000)
    assert first == []
    with pytest.raises(FrameError):  # the whole message counts, fragments included
        reader.feed(frame(CONT, b"b" * 600), limit=1000)
    assert FrameReader().feed(frame(TEXT, b"a" * 1000), limit=1000) == [(TEXT, b"a" * 1000)]


# -- the transport on a raw server --------------------------------------------------------------
class RawServer:
    """Accepts one WebSocket client; the test sends raw bytes and reads the client's frames."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self._accepted = threading.Event()
        self._buffer = b""
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/?format=msgpack"

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        conn.settimeout(WAIT)
        self.conn = conn
        self._accepted.set()

    def send(self, data: bytes) -> None:
        assert self._accepted.wait(WAIT) and self.conn is not None
        self.conn.sendall(data)

    def recv_frame(self) -> tuple[int, bytes]:
        """The next frame the client sent (clients mask; FrameReader unmasks)."""
        assert self._accepted.wait(WAIT) and self.conn is not None
        while True:
            frames = FrameReader().feed(self._buffer) if self._buffer else []
            if frames:
                opcode, payload = frames[0]
                consumed = len(frame(opcode, payload, mask=b"\0\0\0\0"))
                self._buffer = self._buffer[consumed:]
                return opcode, payload
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError("the client closed the TCP connection")
            self._buffer += chunk

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer()
    yield raw
    raw.close()


def _open(server: RawServer, **kwargs: object) -> tuple[WebSocketTransport, queue.Queue[object]]:
    events: queue.Queue[object] = queue.Queue()
    transport = WebSocketTransport(
        server.url,
        on_frame=lambda f: events.put(("frame", f)),
        on_frames=lambda fs: events.put(("frames", fs)),
        on_close=lambda error: events.put(("close", error)),
        connect_timeout=WAIT,
        **kwargs,  # type: ignore[arg-type]
    )
    transport.open()
    return transport, events


def _close(transport: WebSocketTransport, server: RawServer) -> None:
    """A local close, answered by the server as RFC 6455 7.1.2 asks."""
    closer = threading.Thread(target=transport.close)
    closer.start()
    assert server.recv_frame() == (CLOSE, b"\x03\xe8")
    server.send(frame(CLOSE, b"\x03\xe8"))
    closer.join(WAIT)
    assert not closer.is_alive()


def test_frames_of_one_read_are_handed_over_together(server: RawServer) -> None:
    transport, events = _open(server)
    server.send(frame(BINARY, b"one") + frame(TEXT, b"two") + frame(BINARY, b"three"))
    if shortcuts.enabled("websocket.raw_socket"):
        assert events.get(timeout=WAIT) == ("frames", [b"one", "two", b"three"])
    else:  # the library's recv_data: one frame at a time, in order
        got = [events.get(timeout=WAIT) for _ in range(3)]
        assert got == [("frames", [b"one"]), ("frames", ["two"]), ("frames", [b"three"])]
    _close(transport, server)


def test_ping_is_answered_with_pong(server: RawServer) -> None:
    transport, events = _open(server)
    payload = os.urandom(16)
    server.send(frame(PING, payload) + frame(BINARY, b"after"))
    assert server.recv_frame() == (PONG, payload)
    assert events.get(timeout=WAIT) == ("frames", [b"after"])
    _close(transport, server)


def test_server_close_is_answered_and_reported(server: RawServer) -> None:
    transport, events = _open(server)
    server.send(frame(BINARY, b"last") + frame(CLOSE, b"\x03\xe8"))
    assert events.get(timeout=WAIT) == ("frames", [b"last"])
    kind, error = events.get(timeout=WAIT)  # type: ignore[misc]
    assert kind == "close" and isinstance(error, AblyException)
    assert error.code == ErrorCode.CONNECTION_DISCONNECTED
    assert server.recv_frame()[0] == CLOSE
    transport.join(WAIT)
    assert not transport.is_open


def test_local_close_waits_for_the_servers_close_frame(server: RawServer) -> None:
    transport, events = _open(server)
    closer = threading.Thread(target=transport.close)
    closer.start()
    assert server.recv_frame() == (CLOSE, b"\x03\xe8")
    server.send(frame(BINARY, b"dropped: after our close") + frame(CLOSE, b"\x03\xe8"))
    closer.join(WAIT)
    assert not closer.is_alive()
    assert events.get(timeout=WAIT) == ("close", None)
    transport.join(WAIT)
    assert events.empty()
    with pytest.raises(EOFError):
        server.recv_frame()  # and the TCP connection is gone


def test_a_frame_over_the_read_limit_ends_the_transport(server: RawServer) -> None:
    transport, events = _open(server, read_limit=100)
    server.send(frame(BINARY, b"x" * 50) + frame(BINARY, b"y" * 101))
    assert events.get(timeout=WAIT) == ("frames", [b"x" * 50])
    kind, error = events.get(timeout=WAIT)  # type: ignore[misc]
    assert kind == "close" and isinstance(error, AblyException)
    assert "read limit" in error.message and error.code == ErrorCode.CONNECTION_DISCONNECTED
    transport.join(WAIT)


def test_without_on_frames_each_frame_goes_to_on_frame(server: RawServer) -> None:
    events: queue.Queue[object] = queue.Queue()
    transport = WebSocketTransport(
        server.url,
        on_frame=lambda f: events.put(f),
        on_close=lambda error: None,
        connect_timeout=WAIT,
    )
    transport.open()
    server.send(frame(TEXT, b"a") + frame(TEXT, b"b"))
    assert [events.get(timeout=WAIT), events.get(timeout=WAIT)] == ["a", "b"]
    _close(transport, server)
