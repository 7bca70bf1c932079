"""bench/bridge_e2e.py's ``--consumer ceiling``, in a process of its own: raw-WebSocket
subscribers that only count (the emulator's own ceiling). The load itself is
``raw_ws.publisher``."""

from __future__ import annotations

import math
import os
import time

from measure import REDIS_URL
from raw_ws import MESSAGE, decode, subscribe

from ably_bridge.bridge.redis_connect import open_redis


# -- the emulator-ceiling consumer: raw subscribers that only count --------------------------
def ceiling_main(url: str, key: str, fmt: str, channels: list[str], connections: int) -> None:
    """Attach ``channels`` over ``connections`` raw sockets; count messages into Redis."""
    import selectors

    r = open_redis(REDIS_URL)
    counter = os.environ["BENCH_COUNTER_KEY"]
    socks = []
    per = math.ceil(len(channels) / connections)
    for c in range(connections):
        mine = channels[c * per : (c + 1) * per]
        if not mine:
            continue
        socks.append(subscribe(url, key, fmt, mine))
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
