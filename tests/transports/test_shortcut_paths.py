"""Each transport shortcut against the library's public path, on the same input.

``requests.urllib3_pool``: the bytes of the request on the wire and the response
read back. ``websocket.raw_socket``: the frames the client writes (payloads,
opcodes, fin bits; the masks are random either way) and what it hands on, for
data, fragments, pings and the closing handshake. A transport built inside
:func:`ably_bridge.shortcuts.public_paths` takes the public path.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from ably_bridge import shortcuts
from ably_bridge.transports.http import HttpResponse, RequestsTransport
from ably_bridge.transports.websocket import WebSocketTransport
from tests.transports.test_websocket_frames import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    WAIT,
    RawServer,
    frame,
)

PATHS = ["shortcut", "public"]


def built(path: str, make: Callable[[], object]) -> object:
    if path == "public":
        with shortcuts.public_paths():
            return make()
    return make()


# -- HTTP ---------------------------------------------------------------------------------------
class RecordingHttpServer:
    """Answers every request with one fixed response and keeps each request's bytes."""

    RESPONSE = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
        b'Link: <./a?page=2>; rel="next"\r\nLink: <./a?page=1>; rel="first"\r\n'
        b'X-Ably-Serial: 7\r\nContent-Length: 11\r\n\r\n{"ok":true}'
    )

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        data = b""
        with conn, contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.put(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                conn.sendall(self.RESPONSE)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@pytest.fixture
def http_server() -> Iterator[RecordingHttpServer]:
    server = RecordingHttpServer()
    yield server
    server.close()


def _exchange(path: str, server: RecordingHttpServer) -> list[tuple[bytes, HttpResponse]]:
    transport = built(path, RequestsTransport)
    assert isinstance(transport, RequestsTransport)
    headers = {
        "Authorization": "Basic a2V5OnNlY3JldA==",
        "X-Ably-Version": "2",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    out = []
    try:
        for method, target, body in (
            ("GET", "/time", None),
            ("POST", "/channels/a%3Ab/messages?x=1", b'{"name":"n","data":"\xc3\xa9"}'),
            ("POST", "/keys/k/requestToken", b""),
            ("DELETE", "/push/channelSubscriptions?channel=c", None),
        ):
            answer = transport.request(method, server.url + target, headers, body, (2.0, 2.0))
            out.append((server.requests.get(timeout=WAIT), answer))
    finally:
        transport.close()
    return out


def test_http_requests_and_responses_are_the_same_on_both_paths(
    http_server: RecordingHttpServer,
) -> None:
    fast = _exchange("shortcut", http_server)
    public = _exchange("public", http_server)
    assert [request for request, _ in fast] == [request for request, _ in public]
    for (_, a), (_, b) in zip(fast, public, strict=True):
        assert (a.status, dict(a.headers), a.body) == (b.status, dict(b.headers), b.body)
        assert a.headers["link"] == '<./a?page=2>; rel="next", <./a?page=1>; rel="first"'
    assert fast[0][0].startswith(b"GET /time HTTP/1.1\r\n")


# -- WebSocket ----------------------------------------------------------------------------------
def _session(path: str) -> tuple[list[tuple[int, bytes]], list[object]]:
    """One scripted conversation; (frames the client wrote, what it handed on)."""
    server = RawServer()
    events: queue.Queue[object] = queue.Queue()
    transport = built(
        path,
        lambda: WebSocketTransport(
            server.url,
            on_frame=lambda f: events.put(f),
            on_close=lambda error: events.put(("close", error and error.code)),
            connect_timeout=WAIT,
        ),
    )
    assert isinstance(transport, WebSocketTransport)
    assert transport._raw is (path == "shortcut" and shortcuts.enabled("websocket.raw_socket"))
    sent: list[tuple[int, bytes]] = []
    handed: list[object] = []
    try:
        transport.open()
        transport.send('{"action":10,"channel":"é"}')
        transport.send(b"\x85\xa6action\x0a")
        transport.send(b"z" * 70_000)  # a 64-bit length
        sent += [server.recv_frame() for _ in range(3)]
        server.send(
            frame(PING, b"are you there")
            + frame(TEXT, b'{"action":4,', fin=False)
            + frame(CONT, b'"id":"x"}')
            + frame(BINARY, b"\x81\xa1a\x01")
        )
        sent.append(server.recv_frame())  # the pong
        handed += [events.get(timeout=WAIT) for _ in range(2)]
        server.send(frame(CLOSE, b"\x03\xe8"))  # the server closes
        handed.append(events.get(timeout=WAIT))
        sent.append(server.recv_frame())  # the answer to its close
        transport.join(WAIT)
        with pytest.raises(EOFError):
            server.recv_frame()  # and nothing more: the TCP connection is gone
    finally:
        transport.close()
        server.close()
    return sent, handed


def test_websocket_frames_are_the_same_on_both_paths() -> None:
    fast = _session("shortcut")
    public = _session("public")
    assert fast == public
    sent, handed = fast
    assert sent == [
        (TEXT, '{"action":10,"channel":"é"}'.encode()),
        (BINARY, b"\x85\xa6action\x0a"),
        (BINARY, b"z" * 70_000),
        (PONG, b"are you there"),
        (CLOSE, b"\x03\xe8"),
    ]
    assert handed == ['{"action":4,"id":"x"}', b"\x81\xa1a\x01", ("close", 80003)]


@pytest.mark.parametrize("path", PATHS)
def test_a_local_close_waits_for_the_servers_close_on_both_paths(path: str) -> None:
    server = RawServer()
    closes: queue.Queue[object] = queue.Queue()
    transport = built(
        path,
        lambda: WebSocketTransport(
            server.url, on_frame=print, on_close=closes.put, connect_timeout=WAIT
        ),
    )
    assert isinstance(transport, WebSocketTransport)
    try:
        transport.open()
        closer = threading.Thread(target=transport.close)
        closer.start()
        assert server.recv_frame() == (CLOSE, b"\x03\xe8")
        server.send(frame(CLOSE, b"\x03\xe8"))
        closer.join(WAIT)
        assert not closer.is_alive() and transport.close_answered
        assert closes.get(timeout=WAIT) is None
        with pytest.raises(EOFError):
            server.recv_frame()  # no second close frame, then the connection is gone
    finally:
        server.close()
