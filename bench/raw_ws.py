"""The benchmarks' raw-WebSocket Ably client: a minimal RFC 6455 frame codec and the one
publisher every benchmark feeds the emulator with.

The clients speak WebSocket over plain sockets (no per-frame library overhead), so
what a benchmark measures is the server or the subscriber under test, not the
load generator. :func:`publisher` is the load: ``total`` messages, ``batch`` per
ProtocolMessage, round-robin over channels, optionally paced at a rate and
stamped with a clock's reading; ``emulator_fanout.py``, ``bridge_e2e.py`` (through
``e2e_feed.py``) and ``realtime_vs_official.py`` run it in a process of its own.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgpack

__all__ = [
    "ACK",
    "ATTACH",
    "ATTACHED",
    "CONNECTED",
    "MESSAGE",
    "NACK",
    "FrameReader",
    "connect",
    "decode",
    "encode",
    "publisher",
    "read_until",
    "subscribe",
    "ws_connect",
    "ws_frame",
]

ACK, NACK, CONNECTED, ATTACH, ATTACHED, MESSAGE = 1, 2, 4, 10, 11, 15


# -- a minimal WebSocket client (RFC 6455) ------------------------------------------
def ws_connect(host: str, port: int, query: dict[str, str]) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /?{urlencode(query)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing after the headers may be consumed
        if not chunk:
            raise ConnectionError("closed during the WebSocket handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    return sock


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """A masked client frame (mask key 0, so the payload needs no XOR)."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + b"\0\0\0\0" + payload


class FrameReader:
    """Splits a byte stream from the server into frame payloads (server frames are unmasked)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out: list[bytes] = []
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            size = buf[pos + 1] & 0x7F
            start = pos + 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size = struct.unpack_from("!H", buf, pos + 2)[0]
                start = pos + 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size = struct.unpack_from("!Q", buf, pos + 2)[0]
                start = pos + 10
            if len(buf) < start + size:
                break
            if buf[pos] & 0x0F in (1, 2):  # text / binary; pings etc. are skipped
                out.append(bytes(buf[start : start + size]))
            pos = start + size
        del buf[:pos]
        return out


def encode(pm: dict[str, Any], fmt: str) -> bytes:
    if fmt == "msgpack":
        packed: bytes = msgpack.packb(pm, use_bin_type=True)
        return packed
    return json.dumps(pm).encode()


def decode(raw: bytes, fmt: str) -> dict[str, Any]:
    return dict(msgpack.unpackb(raw, raw=False) if fmt == "msgpack" else json.loads(raw))


def read_until(sock: socket.socket, reader: FrameReader, fmt: str, action: int) -> dict[str, Any]:
    while True:
        for raw in reader.feed(sock.recv(65536)):
            pm = decode(raw, fmt)
            if pm.get("action") == action:
                return pm


def connect(url: str, key: str, fmt: str) -> tuple[socket.socket, FrameReader]:
    """A connection to the emulator at ``url`` (``http://host:port``), once CONNECTED."""
    parts = urlsplit(url)
    query = {"key": key, "format": fmt, "v": "6"}
    sock = ws_connect(parts.hostname or "127.0.0.1", parts.port or 80, query)
    reader = FrameReader()
    read_until(sock, reader, fmt, CONNECTED)
    return sock, reader


def subscribe(
    url: str, key: str, fmt: str, channels: list[str]
) -> tuple[socket.socket, FrameReader]:
    """A connection with ``channels`` attached, one after the other; non-blocking."""
    sock, reader = connect(url, key, fmt)
    for name in channels:
        sock.sendall(ws_frame(encode({"action": ATTACH, "channel": name}, fmt), fmt != "json"))
        read_until(sock, reader, fmt, ATTACHED)
    sock.setblocking(False)
    return sock, reader


# -- the publisher -------------------------------------------------------------------------
def publisher(
    url: str,
    key: str,
    fmt: str,
    channels: list[str],
    total: int,
    *,
    batch: int = 1,
    size: int = 100,
    rate: float = 0.0,
    window: int = 100,
    stamp: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.time,
    out: Any = None,
) -> None:
    """Publish ``total`` messages, ``batch`` per ProtocolMessage, round-robin over ``channels``.

    ``rate`` (messages/s) paces the ProtocolMessages evenly from the start; 0 sends
    as fast as ``window`` allows: at most that many ProtocolMessages un-ACKed (0: no
    bound). Payloads are ``size`` characters; with ``stamp`` (``time.time_ns``,
    ``time.monotonic_ns``, ...) each starts with the clock's reading at sending and a
    colon, so a receiver can take latency from it. Returns when every ProtocolMessage
    was ACKed (or NACKed, which is reported on stderr); ``out`` (a queue) then gets
    ``(started, finished)`` read from ``clock``.
    """
    sock, reader = connect(url, key, fmt)
    binary = fmt != "json"
    pad = "x" * size
    started = clock()
    begun = time.monotonic()
    sent_msgs = serial = acked = 0
    frames_total = math.ceil(total / batch)
    interval = batch / rate if rate > 0 else 0.0
    window = window if window > 0 else frames_total
    sock.setblocking(True)
    while acked < frames_total:
        burst = []
        while serial < frames_total and serial - acked < window:
            if interval and time.monotonic() < begun + serial * interval:
                break
            n = min(batch, total - sent_msgs)
            data = pad
            if stamp is not None:
                head = f"{stamp()}:"
                data = (head + pad)[: max(size, len(head))]
            pm = {
                "action": MESSAGE,
                "channel": channels[serial % len(channels)],
                "msgSerial": serial,
                "messages": [{"name": "m", "data": data} for _ in range(n)],
            }
            burst.append(ws_frame(encode(pm, fmt), binary))
            serial += 1
            sent_msgs += n
        if burst:
            sock.sendall(b"".join(burst))
        if interval and serial < frames_total and serial - acked < window:
            sock.settimeout(max(0.0005, begun + serial * interval - time.monotonic()))
        else:
            sock.settimeout(30)
        try:
            received = sock.recv(1 << 20)
        except TimeoutError:
            continue  # the next frame is due
        if not received:
            raise ConnectionError("the emulator closed the publisher")
        for raw in reader.feed(received):
            pm = decode(raw, fmt)
            if pm.get("action") == NACK:
                print("publisher: NACK", pm.get("error"), file=sys.stderr)
            if pm.get("action") in (ACK, NACK):
                acked += int(pm.get("count", 1))
    if out is not None:
        out.put((started, clock()))
    sock.close()
