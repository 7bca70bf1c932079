"""Benchmark: the bridge's delivery thread on the realistic feed, into a real Redis.

What ``Daemon.step`` does for live messages, in one thread, without the
realtime client: one message per frame, round-robin over ``--channels``
channels, the frames that arrive between two pumps of the delivery thread
(``--per-pump``) handed to ``Dispatcher.submit_frames`` in one call (as the
daemon does; ``--submit messages``: one ``submit_messages`` call per frame),
then a ``pump``,
through the production sink (``SinkPool``: metered Redis Streams, Celery on
Redis or, ``--sink celery-amqp``, Celery on RabbitMQ at ``AMQP_URL``) and
checkpoint store (saved every ``--save-every`` pumps, as the
daemon's 50 ms save interval does at a few thousand messages per second).
Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); every key is
under a fresh prefix, deleted afterwards.

Prints CPU microseconds per message (``time.process_time``, best of
``--rounds``). Instruction counts, repeatable on a loaded box: run it under
callgrind at two frame counts and divide the difference::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.a \\
        /work/.venv/bin/python bench/delivery_hot_path.py --frames 2000 --rounds 1
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.b \\
        /work/.venv/bin/python bench/delivery_hot_path.py --frames 4000 --rounds 1
    # (total(b) - total(a)) / 2000 = instructions per message

(``--instructions`` does that and prints the figure.)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from measure import instructions_per_frame  # (bench/ is this script's folder, first on sys.path)

from ably_bridge.bridge.app import SinkPool
from ably_bridge.bridge.checkpoint import CheckpointStore
from ably_bridge.bridge.config import parse_config
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.clock import FakeClock
from ably_bridge.protocol.models import Message

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


class _DeadLetters:
    def write_many(self, letters: list[object]) -> int:
        raise AssertionError(f"dead letters in the benchmark: {letters!r}")


def run(args: argparse.Namespace, prefix: str) -> float:
    if args.sink == "streams":
        target: dict[str, object] = {"type": "redis_stream", "key": prefix + ":s:{channel}"}
    else:
        target = {"type": "celery", "task": "bench.count", "queue": f"{prefix}-q"}
    broker = AMQP_URL if args.sink == "celery-amqp" else REDIS_URL
    raw = {
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "celery": {},  # (its broker_url from the environment: it may hold a password)
        "delivery": {"batch_size": 500, "buffer_size": 20000},
        "routes": [{"id": "bench", "channels": ["bench-*"], "targets": [target]}],
    }
    config = parse_config(raw, {"ABLY_KEY": "app.key:secret", "CELERY_BROKER_URL": broker})
    clock = FakeClock()
    client = open_redis(REDIS_URL)
    sinks = SinkPool(config, BridgeMetrics(), clock)
    dispatcher = Dispatcher(
        config,
        sink_for=sinks,
        dead_letters=_DeadLetters(),  # type: ignore[arg-type]
        checkpoints=CheckpointStore(client, prefix=prefix),
        clock=clock,
        rng=random.Random(1),
        checkpoint_interval=0.05,
    )
    names = [f"bench-{i}" for i in range(args.channels)]
    payload = "x" * 100
    step = 0.05 / args.save_every  # simulated seconds per pump
    feed = [
        (names[f % len(names)], [Message("m", payload, id=f"c:{f}:0", timestamp=1000 + f,
                                          connection_id="c")])
        for f in range(args.frames)
    ]  # fmt: skip
    try:
        start = time.process_time()
        if args.submit == "frames":  # as the daemon does: a step's frames in one call
            for i in range(0, len(feed), args.per_pump):
                if not all(dispatcher.submit_frames(feed[i : i + args.per_pump])):
                    raise AssertionError("back-pressure in the benchmark")
                clock.advance(step)
                dispatcher.pump()
        else:  # one call per frame (the daemon before issue 20's delivery work)
            for index, (channel, messages) in enumerate(feed, 1):
                if not dispatcher.submit_messages(channel, messages):
                    raise AssertionError("back-pressure in the benchmark")
                if index % args.per_pump == 0:
                    clock.advance(step)
                    dispatcher.pump()
        dispatcher.drain()
        dispatcher.flush_checkpoints()
        spent = time.process_time() - start
        if dispatcher.stats.delivered != args.frames:
            raise AssertionError(f"delivered {dispatcher.stats.delivered} of {args.frames}")
        return spent / args.frames * 1e6
    finally:
        sinks.close()
        if args.sink == "celery-amqp":
            _delete_queue(f"{prefix}-q")
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()


def _delete_queue(name: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL) as conn:
        conn.default_channel.queue_delete(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sink", choices=["streams", "celery-redis", "celery-amqp"], default="streams"
    )
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--per-pump", type=int, default=50, help="frames between two pumps")
    parser.add_argument("--save-every", type=int, default=5, help="pumps per checkpoint save")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--submit",
        choices=["frames", "messages"],
        default="frames",
        help="frames: a pump's frames in one submit_frames call, as Daemon.step does; "
        "messages: one submit_messages call per frame",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run twice under callgrind (--frames and 2x) and print instructions per message",
    )
    args = parser.parse_args()
    if args.instructions:
        per_frame = instructions_per_frame(__file__, sys.argv[1:], args.frames)
        print(f"{args.sink}: {per_frame:,.0f} instructions per message")
        return
    prefix = f"benchhot{os.getpid()}"
    best = min(run(args, prefix) for _ in range(args.rounds))
    print(f"{args.sink}: {best:.2f} us CPU per message (best of {args.rounds})")


if __name__ == "__main__":
    main()
