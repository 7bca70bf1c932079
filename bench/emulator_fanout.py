"""Fan-out benchmark for the emulator: one realtime publisher, N subscribers.

Run: ``/work/.venv/bin/python bench/emulator_fanout.py --subscribers 20 --messages 2000``.
Prints messages delivered per second (sum over subscribers). Uses msgpack by
default (``--format json`` to compare). Publishes in batches of ``--batch``
ProtocolMessages before waiting for ACKs so the publisher is not the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import msgpack
import websocket

from ably_bridge.emulator import Emulator


def _client(emu: Emulator, fmt: str) -> websocket.WebSocket:
    query = urlencode({"key": emu.root_key, "format": fmt, "v": "6"})
    ws = websocket.create_connection(f"{emu.ws_url}/?{query}", timeout=30)
    ws.recv()  # CONNECTED
    return ws


def _decode(raw: Any) -> dict[str, Any]:
    return dict(msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw))


def _send(ws: websocket.WebSocket, fmt: str, pm: dict[str, Any]) -> None:
    if fmt == "json":
        ws.send(json.dumps(pm))
    else:
        ws.send_binary(msgpack.packb(pm, use_bin_type=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--format", choices=["json", "msgpack"], default="msgpack")
    args = parser.parse_args()
    fmt = args.format
    with Emulator() as emu:
        subs = [_client(emu, fmt) for _ in range(args.subscribers)]
        for ws in subs:
            _send(ws, fmt, {"action": 10, "channel": "bench"})
            while _decode(ws.recv())["action"] != 11:
                pass
        counts = [0] * len(subs)
        done = threading.Barrier(len(subs) + 1)

        def reader(index: int, ws: websocket.WebSocket) -> None:
            while counts[index] < args.messages:
                pm = _decode(ws.recv())
                if pm.get("action") == 15:
                    counts[index] += len(pm.get("messages", []))
            done.wait()

        threads = [
            threading.Thread(target=reader, args=(i, ws), daemon=True) for i, ws in enumerate(subs)
        ]
        for thread in threads:
            thread.start()
        pub = _client(emu, fmt)
        started = time.perf_counter()
        serial = 0
        while serial < args.messages:
            batch = min(args.batch, args.messages - serial)
            for _ in range(batch):
                pm = {
                    "action": 15,
                    "channel": "bench",
                    "msgSerial": serial,
                    "messages": [{"name": "m", "data": "x" * 100}],
                }
                _send(pub, fmt, pm)
                serial += 1
            acked = 0
            while acked < batch:
                if _decode(pub.recv())["action"] in (1, 2):
                    acked += 1
        done.wait(timeout=120)
        elapsed = time.perf_counter() - started
        delivered = sum(counts)
        print(
            f"{fmt}: {args.subscribers} subscribers x {args.messages} messages: "
            f"{delivered} delivered in {elapsed:.2f}s = {delivered / elapsed:,.0f} msg/s"
        )
        for ws in [*subs, pub]:
            ws.close()


if __name__ == "__main__":
    main()
