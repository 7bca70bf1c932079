"""bench/bridge_e2e.py's load side, each in a process of its own: the raw-WebSocket
publisher of ``--batch``-message arrays round-robin over the channels, and the
``--consumer ceiling`` subscribers that only count (the emulator's own ceiling)."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from emulator_fanout import (
    ACK,
    ATTACH,
    ATTACHED,
    MESSAGE,
    NACK,
    FrameReader,
    decode,
    encode,
    read_until,
    ws_connect,
    ws_frame,
)
from measure import REDIS_URL

from ably_bridge.bridge.redis_connect import open_redis


# -- publisher process ---------------------------------------------------------------------
def publisher(
    url: str,
    key: str,
    fmt: str,
    channels: list[str],
    total: int,
    batch: int,
    size: int,
    rate: float,
    window: int,
    out: Any,
) -> None:
    """Publish ``total`` messages, ``batch`` per ProtocolMessage; paced at ``rate``/s if > 0.

    Each payload starts with the send time (``time.time_ns()``) so that latency
    can also be taken from the publisher's clock.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    sock = ws_connect(parts.hostname or "127.0.0.1", parts.port or 80, {"key": key, "format": fmt})
    reader = FrameReader()
    read_until(sock, reader, fmt, 4)
    binary = fmt != "json"
    pad = "x" * size
    started = time.time()
    sent_msgs = serial = acked = 0
    frames_total = math.ceil(total / batch)
    interval = batch / rate if rate > 0 else 0.0
    sock.setblocking(True)
    while acked < frames_total:
        burst = []
        while serial < frames_total and serial - acked < window:
            if interval:
                due = started + serial * interval
                if time.time() < due:
                    break
            n = min(batch, total - sent_msgs)
            stamp = str(time.time_ns())
            data = (stamp + ":" + pad)[: max(size, len(stamp) + 1)]
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
            wait = started + serial * interval - time.time()
            sock.settimeout(max(0.0005, wait))
        else:
            sock.settimeout(30)
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not data:
            raise ConnectionError("the emulator closed the publisher")
        for raw in reader.feed(data):
            pm = decode(raw, fmt)
            if pm.get("action") in (ACK, NACK):
                if pm.get("action") == NACK:
                    print("publisher: NACK", pm.get("error"), file=sys.stderr)
                acked += int(pm.get("count", 1))
    out.put((started, time.time()))
    sock.close()


# -- the emulator-ceiling consumer: raw subscribers that only count --------------------------
def ceiling_main(url: str, key: str, fmt: str, channels: list[str], connections: int) -> None:
    """Attach ``channels`` over ``connections`` raw sockets; count messages into Redis."""
    import selectors
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    r = open_redis(REDIS_URL)
    counter = os.environ["BENCH_COUNTER_KEY"]
    socks = []
    per = math.ceil(len(channels) / connections)
    for c in range(connections):
        mine = channels[c * per : (c + 1) * per]
        if not mine:
            continue
        sock = ws_connect(
            parts.hostname or "127.0.0.1", parts.port or 80, {"key": key, "format": fmt}
        )
        reader = FrameReader()
        read_until(sock, reader, fmt, 4)
        for name in mine:
            sock.sendall(ws_frame(encode({"action": ATTACH, "channel": name}, fmt), fmt != "json"))
            read_until(sock, reader, fmt, ATTACHED)
        sock.setblocking(False)
        socks.append((sock, reader))
    r.set(counter + ":ready", 1)
    selector = selectors.DefaultSelector()
    for index, (sock, _) in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    count = 0
    last_flush = time.monotonic()
    while True:
        for event, _ in selector.select(timeout=0.01):
            sock, reader = socks[event.data]
            data = sock.recv(1 << 20)
            if not data:
                return
            for raw in reader.feed(data):
                pm = decode(raw, fmt)
                if pm.get("action") == MESSAGE:
                    count += len(pm["messages"])
        now = time.monotonic()
        if now - last_flush > 0.005:
            r.set(counter, count)
            last_flush = now
