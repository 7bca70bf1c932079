"""Fan-out benchmark for the emulator, with every client outside the emulator's process.

The emulator runs as ``python -m ably_bridge.emulator`` in its own process (or
``--url``/``--key`` name one already running). ``--procs`` subscriber processes
share ``--subscribers`` realtime connections spread over ``--channels``
channels; one publisher process sends ``--messages`` MESSAGE ProtocolMessages
round-robin over the channels, keeping ``--window`` un-ACKed at a time. The
clients speak WebSocket over raw sockets with a minimal frame codec (no
per-frame library overhead), so the figure reflects the server.

Prints messages delivered per second summed over subscribers, measured from
the first publish to the last delivery, and the emulator's CPU seconds.

    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 20 --messages 2000
    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 20 --messages 2000 --format json
    /work/.venv/bin/python bench/emulator_fanout.py --subscribers 100 --channels 10 --messages 5000
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgpack
from measure import cpu_seconds  # (bench/ is this script's folder, first on sys.path)

MESSAGE, ACK, NACK, ATTACH, ATTACHED = 15, 1, 2, 10, 11


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


# -- processes ------------------------------------------------------------------------
def subscriber(
    url: str,
    key: str,
    fmt: str,
    channels: list[str],
    expected: list[int],
    ready: Any,
    results: Any,
) -> None:
    """Hold one connection per entry of ``channels``; count MESSAGE items until ``expected``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    socks = []
    for channel in channels:
        sock = ws_connect(host, port, {"key": key, "format": fmt, "v": "6"})
        reader = FrameReader()
        read_until(sock, reader, fmt, 4)
        sock.sendall(ws_frame(encode({"action": ATTACH, "channel": channel}, fmt), fmt != "json"))
        read_until(sock, reader, fmt, ATTACHED)
        sock.setblocking(False)
        socks.append((sock, reader))
    ready.put(len(socks))
    selector = selectors.DefaultSelector()
    counts = [0] * len(socks)
    for index, (sock, _) in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    first = last = 0.0
    remaining = sum(1 for c in expected if c > 0)
    deadline = time.monotonic() + 600
    while remaining and time.monotonic() < deadline:
        for event, _ in selector.select(timeout=1.0):
            index = event.data
            sock, reader = socks[index]
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed a subscriber")
            for raw in reader.feed(data):
                pm = decode(raw, fmt)
                if pm.get("action") == MESSAGE:
                    before = counts[index]
                    counts[index] += len(pm["messages"])
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    if before < expected[index] <= counts[index]:
                        remaining -= 1
    results.put((sum(counts), first, last))
    for sock, _ in socks:
        sock.close()


def publisher(
    url: str, key: str, fmt: str, channels: list[str], total: int, window: int, size: int, out: Any
) -> None:
    parts = urlsplit(url)
    sock = ws_connect(parts.hostname or "127.0.0.1", parts.port or 80, {"key": key, "format": fmt})
    reader = FrameReader()
    read_until(sock, reader, fmt, 4)
    binary = fmt != "json"
    data = "x" * size
    started = time.perf_counter()
    sent = acked = 0
    while acked < total:
        burst = []
        while sent < total and sent - acked < window:
            pm = {
                "action": MESSAGE,
                "channel": channels[sent % len(channels)],
                "msgSerial": sent,
                "messages": [{"name": "m", "data": data}],
            }
            burst.append(ws_frame(encode(pm, fmt), binary))
            sent += 1
        if burst:
            sock.sendall(b"".join(burst))
        for raw in reader.feed(sock.recv(1 << 20)):
            pm = decode(raw, fmt)
            if pm.get("action") in (ACK, NACK):
                acked += int(pm.get("count", 1))
    out.put(started)
    sock.close()


def start_emulator() -> tuple[subprocess.Popen[bytes], str, str]:
    keys = Path(tempfile.mkdtemp(prefix="fanout-")) / "keys.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ably_bridge.emulator",
            "--port",
            "0",
            "--log-level",
            "WARNING",
            "--keys-file",
            str(keys),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not keys.exists() or not keys.read_text().strip().endswith("}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    info = json.loads(keys.read_text())
    return proc, str(info["endpoint"]), str(info["keys"][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=20, help="connections in total")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--messages", type=int, default=2000, help="published in total")
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--window", type=int, default=100, help="un-ACKed publishes in flight")
    parser.add_argument("--size", type=int, default=100, help="payload characters")
    parser.add_argument("--format", choices=["json", "msgpack"], default="msgpack")
    parser.add_argument("--url", help="an emulator already running (default: start one)")
    parser.add_argument("--key", help="its root key (with --url)")
    args = parser.parse_args()
    fmt = args.format
    emulator = None
    if args.url:
        url, key = args.url, args.key
    else:
        emulator, url, key = start_emulator()
    try:
        names = [f"bench-{i}" for i in range(args.channels)]
        per_channel = [
            args.messages // len(names) + (i < args.messages % len(names))
            for i in range(len(names))
        ]
        assignment = [names[i % len(names)] for i in range(args.subscribers)]
        ctx = mp.get_context("spawn")
        ready, results, started_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
        procs = []
        for p in range(args.procs):
            mine = assignment[p :: args.procs]
            if not mine:
                continue
            expected = [per_channel[names.index(c)] for c in mine]
            procs.append(
                ctx.Process(target=subscriber, args=(url, key, fmt, mine, expected, ready, results))
            )
        for proc in procs:
            proc.start()
        connected = sum(ready.get(timeout=120) for _ in procs)
        cpu_before = cpu_seconds(emulator.pid) if emulator else None
        pub = ctx.Process(
            target=publisher,
            args=(url, key, fmt, names, args.messages, args.window, args.size, started_q),
        )
        pub.start()
        totals = [results.get(timeout=600) for _ in procs]
        started = started_q.get(timeout=600)
        pub.join()
        for proc in procs:
            proc.join()
        cpu = (
            cpu_seconds(emulator.pid) - cpu_before if emulator and cpu_before is not None else None
        )
        delivered = sum(t[0] for t in totals)
        elapsed = max(t[2] for t in totals) - started
        line = (
            f"{fmt}: {connected} subscribers on {len(names)} channel(s), "
            f"{args.messages} published: {delivered} delivered in {elapsed:.2f}s "
            f"= {delivered / elapsed:,.0f} msg/s"
        )
        if cpu is not None:
            line += f" (emulator CPU {cpu:.2f}s, {delivered / cpu:,.0f} deliveries per CPU-second)"
        print(line)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
