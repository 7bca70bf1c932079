"""Benchmark: the bridge's dispatcher alone, one route into an in-memory sink.

``Dispatcher.submit_messages`` + ``drain`` for ``--frames`` frames of
``--batch`` messages on one channel (routing, envelopes, dedup window, sink
buffers, checkpoints bookkeeping), single-threaded, no I/O. Prints the best of
``--rounds`` runs in CPU microseconds per message. Deterministic instruction
counts: run it under callgrind at two frame counts and divide the difference::

    /work/.venv/bin/python bench/dispatch_hot_path.py
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.200 \\
        /work/.venv/bin/python bench/dispatch_hot_path.py --frames 200 --rounds 1
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.300 \\
        /work/.venv/bin/python bench/dispatch_hot_path.py --frames 300 --rounds 1
    # (total(300) - total(200)) / (100 * 50) = instructions per message
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from ably_bridge.bridge.config import parse_config
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.sinks.base import MemorySink
from ably_bridge.clock import FakeClock
from ably_bridge.protocol.models import Message


class _Checkpoints:
    def advance_many(self, route_id: str, positions: dict[str, Any]) -> dict[str, bool]:
        return dict.fromkeys(positions, True)


class _DeadLetters:
    def write_many(self, letters: list[Any]) -> int:
        return len(letters)


def run(frames: int, batch: int) -> float:
    raw = {
        "redis": {"url": "memory://"},
        "routes": [
            {
                "id": "r",
                "channels": ["bench-*"],
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            }
        ],
    }
    config = parse_config(raw, {"ABLY_KEY": "app.key:secret"})
    sink = MemorySink()
    dispatcher = Dispatcher(
        config,
        sink_for=lambda target: sink,
        dead_letters=_DeadLetters(),  # type: ignore[arg-type]
        checkpoints=_Checkpoints(),  # type: ignore[arg-type]
        clock=FakeClock(),
        rng=random.Random(1),
        checkpoint_interval=0.0,
    )
    feed = [
        [
            Message("m", "x" * 100, id=f"c:{f}:{i}", timestamp=1000 + f, connection_id="c")
            for i in range(batch)
        ]
        for f in range(frames)
    ]
    start = time.process_time()
    for messages in feed:
        dispatcher.submit_messages("bench-0", messages)
        dispatcher.drain()
        sink.records.clear()
    return (time.process_time() - start) / (frames * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best = min(run(args.frames, args.batch) for _ in range(args.rounds))
    print(f"dispatcher: {best:.2f} us CPU per message (best of {args.rounds})")


if __name__ == "__main__":
    main()
