"""Benchmark: the bridge's realtime reader path at one message per frame, many channels.

What the reactor thread does for each inbound MESSAGE frame of the realistic
feed, in one thread: the socket read, WebSocket frame parsing, ProtocolMessage
decoding (msgpack or JSON), the session lock and the protocol core's step,
the listener delivery, the bridge's inline listener
(:class:`~ably_bridge.bridge.realtime_source.RealtimeSource`) and the hand-off
into an inbox (the daemon's ``on_messages``: one ``Live`` item per frame) -
everything between the socket and the delivery thread.

Setup: the emulator in its own process; ``--connections`` realtime clients
(the bridge's options) with a ``RealtimeSource`` each, ``--channels`` channels
spread over them, attached for real. Then each client's socket is taken off
the reactor and its transport reads a socket pair instead, fed frames built
from one MESSAGE frame the emulator really sent (its fields, channel, ids,
serials and a 100-character payload), round-robin over the channels, written
``--per-read`` frames of one connection at a time and read by the transport's
reactor callback (``_on_readable``) within the reactor's round context.

Prints CPU microseconds per message (``time.process_time``, every thread;
best of ``--rounds``). ``--instructions`` runs the bench under callgrind at
``--frames`` and twice that and prints the difference per message:
repeatable on a loaded box. For a profile, keep one output::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.reader \\
        .venv/bin/python bench/reader_path.py --frames 4000 --rounds 1
    callgrind_annotate /tmp/cg.reader | head -60
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from emulator_fanout import start_emulator
from measure import instructions_per_frame
from raw_ws import MESSAGE, connect, encode, read_until, subscribe, ws_frame

from ably_bridge.bridge.realtime_source import RealtimeSource
from ably_bridge.bridge.source import SourceHandlers
from ably_bridge.bridge.tracks import Live
from ably_bridge.realtime import AblyRealtime
from ably_bridge.realtime.callback_pool import deferred_wakes


def sample_frame(url: str, key: str, fmt: str) -> dict[str, Any]:
    """One MESSAGE frame as the emulator fans a single published message out."""
    sub, sub_reader = subscribe(url, key, fmt, ["sample"])
    sub.setblocking(True)
    pub, _ = connect(url, key, fmt)
    data = (str(time.time_ns()) + ":" + "x" * 100)[:100]
    pm = {"action": MESSAGE, "channel": "sample", "msgSerial": 0,
          "messages": [{"name": "m", "data": data}]}  # fmt: skip
    pub.sendall(ws_frame(encode(pm, fmt), fmt != "json"))
    frame = read_until(sub, sub_reader, fmt, MESSAGE)
    sub.close()
    pub.close()
    return frame


def build_feed(
    sample: dict[str, Any], names: list[str], frames: int, fmt: str
) -> list[tuple[int, bytes]]:
    """``(channel index, server frame bytes)`` round-robin over ``names``."""
    binary = fmt != "json"
    feed = []
    origin = str(sample.get("connectionId", "pub"))
    for f in range(frames):
        index = f % len(names)
        message = dict(sample["messages"][0])
        message["id"] = f"{origin}:{f}:0"
        if "serial" in message:
            message["serial"] = f"{f:016d}@0"
        pm = dict(sample, channel=names[index], channelSerial=f"{f:016d}@0",
                  id=f"{origin}:{f}", messages=[message])  # fmt: skip
        payload = encode(pm, fmt)
        header = bytes([0x82 if binary else 0x81])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        else:
            header += bytes([126]) + size.to_bytes(2, "big")
        feed.append((index, header + payload))
    return feed


class Rig:
    """The clients, their sources and the inbox; see the module docstring."""

    def __init__(self, url: str, key: str, fmt: str, channels: int, connections: int) -> None:
        parts = urlsplit(url)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.names = [f"bench-{i}" for i in range(channels)]
        self.clients = [
            AblyRealtime(
                key=key, endpoint=parts.hostname, port=parts.port, tls=False,
                use_binary_protocol=fmt == "msgpack", insecure_allow_basic_over_http=True,
                callback_workers=8, auto_connect=False,
            )
            for _ in range(connections)
        ]  # fmt: skip
        for client in self.clients:
            client.connect(timeout=30)
        self.sources = [RealtimeSource(client, attach_timeout=120) for client in self.clients]
        self.owner = [i % connections for i in range(channels)]
        attached = threading.Semaphore(0)
        for index, name in enumerate(self.names):
            self.sources[self.owner[index]].attach(name, self._handlers(name, attached))
        for _ in self.names:
            if not attached.acquire(timeout=300):
                raise RuntimeError("channels did not attach")
        self._drain()
        self.feeders: list[socket.socket] = []
        for client in self.clients:
            self.feeders.append(self._take_over(client))

    def _handlers(self, name: str, attached: threading.Semaphore) -> SourceHandlers:
        put = self.inbox.put
        epoch = 1

        # As the daemon's (daemon_channels.py, _new_attachment): one Live item per call.
        def on_messages(messages: Any) -> None:
            put(Live(name, epoch, "messages", list(messages)))

        def on_presence(messages: Any) -> None:
            put(Live(name, epoch, "presence", list(messages)))

        def on_state(change: Any) -> None:
            if change.current == "attached":
                attached.release()
            put(Live(name, epoch, "state", change))

        return SourceHandlers(on_messages, on_presence, on_presence, on_state)

    @staticmethod
    def _take_over(client: AblyRealtime) -> socket.socket:
        """The transport reads a socket pair from now on; returns its writing end."""
        transport = client._loop.links._current
        assert transport is not None and transport._reactor is not None
        assert transport._sock is not None
        transport._reactor.unregister(transport._sock)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        transport._sock = ours
        return theirs

    def _drain(self) -> int:
        got = 0
        inbox = self.inbox
        while not inbox.empty():
            item = inbox.get_nowait()
            if item.kind == "messages":
                got += len(item.payload)
        return got

    def run(self, feed: list[tuple[int, bytes]], per_read: int) -> float:
        """Feed every frame; CPU seconds spent."""
        readers = [c._loop.links._current._on_readable for c in self.clients]  # type: ignore[union-attr]
        chunks: list[tuple[int, bytes]] = []
        pending: dict[int, list[bytes]] = {}
        for index, frame in feed:
            conn = self.owner[index]
            parts = pending.setdefault(conn, [])
            parts.append(frame)
            if len(parts) == per_read:
                chunks.append((conn, b"".join(parts)))
                del pending[conn]
        chunks.extend((conn, b"".join(parts)) for conn, parts in pending.items())
        feeders = self.feeders
        got = 0
        start = time.process_time()
        for n, (conn, chunk) in enumerate(chunks, 1):
            feeders[conn].sendall(chunk)
            with deferred_wakes():
                readers[conn]()
            if n % 256 == 0:
                got += self._drain()
        got += self._drain()
        spent = time.process_time() - start
        if got != len(feed):
            raise AssertionError(f"handed on {got} of {len(feed)} messages")
        return spent

    def close(self) -> None:
        for source in self.sources:
            source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--per-read", type=int, default=1, help="frames per socket read")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run twice under callgrind (--frames and 2x) and print instructions per message",
    )
    args = parser.parse_args()
    if args.instructions:
        per_frame = instructions_per_frame(__file__, sys.argv[1:], args.frames)
        print(f"{args.format}, {args.per_read}/read: {per_frame:,.0f} instructions per message")
        return
    emulator, url, key = start_emulator()
    rig = None
    try:
        sample = sample_frame(url, key, args.format)
        rig = Rig(url, key, args.format, args.channels, args.connections)
        feed = build_feed(sample, rig.names, args.frames, args.format)
        best = min(rig.run(feed, args.per_read) for _ in range(args.rounds))
        print(
            f"{args.format}, {args.per_read}/read: {best / args.frames * 1e6:.2f} us CPU per "
            f"message (best of {args.rounds}); sample frame {json.dumps(sample)[:300]}"
        )
    finally:
        if rig is not None:
            rig.close()
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
