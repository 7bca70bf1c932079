"""The emulator's ``aiohttp.raw_frames`` shortcut against aiohttp's public send, byte for byte.

An aiohttp server sends the same frames through the emulator's
:class:`~ably_bridge.emulator.outbox.Outbox` - written into the transport
as pre-built frames (the shortcut), or handed to ``send_str``/``send_bytes``/
``ping`` by a :class:`~ably_bridge.emulator.outbox.PublicSender` (the public
path) - and closes; a raw client reads every byte after the handshake. Both
byte streams must be the same.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from ably_bridge.clock import SystemClock
from ably_bridge.emulator.outbox import WS_PING, Flusher, Outbox, PublicSender, ws_frame

PAYLOADS: list[str | bytes | None] = [
    '{"action":4,"connectionId":"c"}',
    "é" * 200,  # a 16-bit length
    b"\x81\xa6action\x0f",
    None,  # a ping
    b"m" * 70_000,  # a 64-bit length
    "",
]


class FrameServer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.public = False
        self.port = 0
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True)
        await ws.prepare(request)
        closing = asyncio.Event()
        loop = asyncio.get_running_loop()
        out = Outbox(
            lambda: request.transport,
            Flusher(),
            SystemClock(),
            lambda delay, fn: loop.call_later(delay, fn),  # type: ignore[arg-type,return-value]
            closing.set,
            lambda: None,
            PublicSender(ws) if self.public else None,
        )
        for payload in PAYLOADS:
            out.send(WS_PING if payload is None else ws_frame(payload))
        out.send(None)  # close after what precedes it
        await closing.wait()
        if out.public is not None:
            await out.public.drained()
        await ws.close()
        return ws

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def frame_server() -> Iterator[FrameServer]:
    server = FrameServer()
    yield server
    server.stop()


def _received(port: int) -> bytes:
    """Every byte the server sends after the handshake, until it closes."""
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        while not data.endswith(b"\x88\x02\x03\xe8"):  # the server's close frame (1000)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        # Answer the close, as a client must (RFC 6455 5.5.1): a masked close frame.
        sock.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")
    return data


def test_frames_on_the_wire_are_the_same_on_both_paths(frame_server: FrameServer) -> None:
    fast = _received(frame_server.port)
    frame_server.public = True
    public = _received(frame_server.port)
    expected = b"".join(WS_PING if p is None else ws_frame(p) for p in PAYLOADS)
    assert fast == public == expected + b"\x88\x02\x03\xe8"
