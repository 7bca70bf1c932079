"""WebSocketTransport against a real aiohttp websocket server on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import queue
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType, web

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.transports.reactor import Reactor
from ably_bridge.transports.websocket import WebSocketTransport, redact_url


@dataclass
class EchoServer:
    url: str
    loop: asyncio.AbstractEventLoop
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)

    def close_all(self) -> None:
        async def _close() -> None:
            for ws in list(self.sockets):
                await ws.close()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        server.headers_seen.append(dict(request.headers))
        server.sockets.append(ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close()
                    break
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    assert ready.wait(10)
    server = EchoServer(url=f"ws://127.0.0.1:{holder['port']}/?format=json", loop=loop)
    yield server
    runner = holder["runner"]
    assert isinstance(runner, web.AppRunner)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@dataclass
class DeafServer:
    """Completes the WebSocket handshake, then never reads again (a stalled peer)."""

    url: str
    conns: list[socket.socket] = field(default_factory=list)


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
def deaf_server() -> Iterator[DeafServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = DeafServer(url=f"ws://127.0.0.1:{listener.getsockname()[1]}/")

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            found = re.search(rb"sec-websocket-key:\s*(\S+)", request, re.IGNORECASE)
            assert found is not None
            accept = base64.b64encode(hashlib.sha1(found.group(1) + _WS_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            server.conns.append(conn)  # kept open, never read

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
    listener.close()
    for conn in server.conns:
        conn.close()
    thread.join(5)


_reactor: Reactor | None = None  # how the transports of the running test are read


@pytest.fixture(params=["reader-thread", "reactor"], autouse=True)
def reading(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs with a reader thread per socket and with a reactor."""
    global _reactor
    _reactor = Reactor(name="test-reactor") if request.param == "reactor" else None
    yield str(request.param)
    _reactor = None


def _transport(url: str, **kwargs: object) -> tuple[WebSocketTransport, queue.Queue[object]]:
    events: queue.Queue[object] = queue.Queue()
    kwargs.setdefault("reactor", _reactor)
    transport = WebSocketTransport(
        url,
        on_frame=lambda frame: events.put(("frame", frame)),
        on_close=lambda error: events.put(("close", error)),
        connect_timeout=5,
        **kwargs,  # type: ignore[arg-type]
    )
    return transport, events


def test_text_and_binary_frames_round_trip(echo_server: EchoServer) -> None:
    transport, events = _transport(echo_server.url, headers={"Ably-Agent": "test/1"})
    transport.open()
    transport.send('{"action":0}')
    transport.send(b"\x81\xa6action\x00")
    assert events.get(timeout=5) == ("frame", '{"action":0}')
    assert events.get(timeout=5) == ("frame", b"\x81\xa6action\x00")
    assert echo_server.headers_seen[0]["Ably-Agent"] == "test/1"
    assert transport.is_open
    transport.close()
    assert events.get(timeout=5) == ("close", None)
    transport.join(5)
    assert not transport.is_open
    # The close handshake completed (RFC 6455 7.1.2): the server's close frame was
    # read after ours was sent, rather than the wait for it timing out.
    assert transport.close_answered


def test_a_large_outbound_frame_is_written_whole(echo_server: EchoServer) -> None:
    transport, events = _transport(echo_server.url)
    transport.open()
    big = bytes(range(256)) * 8192  # 2 MiB: more than a socket buffer takes at once
    transport.send(big)
    assert events.get(timeout=10) == ("frame", big)
    transport.close()


def test_server_close_is_reported_once_with_an_error(echo_server: EchoServer) -> None:
    transport, events = _transport(echo_server.url)
    transport.open()
    transport.send("close-me")
    kind, error = events.get(timeout=5)  # type: ignore[misc]
    assert kind == "close"
    assert isinstance(error, AblyException)
    assert error.code == ErrorCode.CONNECTION_DISCONNECTED
    transport.close()  # a second end is not reported again
    transport.join(5)
    assert events.empty()


def test_abrupt_server_side_drop(echo_server: EchoServer) -> None:
    transport, events = _transport(echo_server.url)
    transport.open()
    echo_server.close_all()
    kind, error = events.get(timeout=5)  # type: ignore[misc]
    assert kind == "close"
    assert isinstance(error, AblyException)
    with pytest.raises(AblyException) as info:
        transport.send("late")
    assert info.value.code == ErrorCode.CONNECTION_DISCONNECTED


def test_refused_connection_is_80000_without_secrets() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport, events = _transport(f"ws://127.0.0.1:{port}/?key=app.id:TOPSECRET")
    with pytest.raises(AblyException) as info:
        transport.open()
    assert info.value.code == ErrorCode.CONNECTION_FAILED
    assert "TOPSECRET" not in str(info.value)
    assert "TOPSECRET" not in repr(transport)
    assert events.empty()


def test_http_error_status_is_reported(echo_server: EchoServer) -> None:
    transport, _events = _transport(echo_server.url.replace("/?", "/missing?"))
    with pytest.raises(AblyException) as info:
        transport.open()
    assert info.value.code == ErrorCode.CONNECTION_FAILED
    assert info.value.status_code == 404


def test_custom_dialer_is_used_and_close_during_dial_is_honoured() -> None:
    class FakeWs:
        closed = False

        def send(self, payload: bytes | str, opcode: int = 1) -> int:
            return 0

        def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
            raise OSError("never")

        def close(self, status: int = 1000, reason: bytes = b"", timeout: float = 3) -> None:
            FakeWs.closed = True

    holder: list[WebSocketTransport] = []

    def dialer(url: str, *, headers: dict[str, str], timeout: float) -> FakeWs:
        holder[0].close()  # closed by another thread while dialling
        return FakeWs()

    transport, events = _transport("ws://example.invalid/", dialer=dialer)
    holder.append(transport)
    with pytest.raises(AblyException):
        transport.open()
    assert FakeWs.closed
    assert events.get(timeout=1) == ("close", None)


def test_redact_url_hides_credentials_and_connection_keys() -> None:
    url = "wss://h/?key=a.b:SECRET&format=msgpack&resume=ck!x&accessToken=TOK&v=6"
    shown = redact_url(url)
    for secret in ("SECRET", "ck!x", "TOK"):
        assert secret not in shown
    assert "format=msgpack" in shown
    assert "v=6" in shown
    assert redact_url("wss://h/") == "wss://h/"


def test_a_peer_that_stops_reading_never_blocks_a_send(
    deaf_server: DeafServer, echo_server: EchoServer
) -> None:
    """Sends queue behind a stalled peer instead of waiting; past the bound the
    transport ends with 80003, and other connections were served all along."""
    stuck, stuck_events = _transport(deaf_server.url, send_limit=1 << 20)
    stuck.open()
    other, other_events = _transport(echo_server.url)
    other.open()
    frame = b"x" * 65536

    def send_until_refused() -> None:
        for _ in range(100_000):  # far more than the kernel buffers and the bound hold
            stuck.send(frame)

    with pytest.raises(AblyException) as info:
        send_until_refused()
    assert info.value.code == ErrorCode.CONNECTION_DISCONNECTED
    assert "not draining" in info.value.message
    kind, error = stuck_events.get(timeout=5)
    assert kind == "close" and isinstance(error, AblyException)
    assert error.code == ErrorCode.CONNECTION_DISCONNECTED
    assert not stuck.is_open
    other.send("still served")
    assert other_events.get(timeout=5) == ("frame", "still served")
    other.close()
