"""The Redis Streams consumer-group runner: ack after success, take-over, dead letters, CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.workers.conftest import REDIS_DB14, unique
from workers import StreamConfig, StreamConsumer, StreamEntry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_DB14)  # each test deletes the streams it made
    yield conn
    conn.close()


def add(client: redis.Redis, stream: str, data: str, *, flat: bool = False) -> str:
    message = Message("n", data, id=unique("m") + ":0", timestamp=1)
    env = EnvelopeBuilder("app", "local").message("chan", message, "route")
    fields: dict[Any, Any] = env.flat_fields() if flat else {"envelope": env.to_json()}
    return client.xadd(stream, fields).decode()


def drain(consumer: StreamConsumer, until: Any, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not until():
        assert time.monotonic() < end, "condition not reached in time"
        consumer.run_once(block=0.05)


def test_acks_after_success_in_both_layouts(client: redis.Redis) -> None:
    stream = unique("abw-stream")
    ids = [add(client, stream, "a"), add(client, stream, "b", flat=True)]
    seen: list[tuple[str, Any]] = []
    consumer = StreamConsumer(
        client,
        lambda e: seen.append((e.entry_id, e.events[0].data)),
        StreamConfig(streams=[stream], group="g", consumer="c1"),
    )
    assert consumer.run_once(block=0.05) == 2
    assert seen == [(ids[0], "a"), (ids[1], "b")]
    assert client.xpending(stream, "g")["pending"] == 0
    client.delete(stream)


def test_poison_entry_is_dead_lettered_after_n_deliveries(client: redis.Redis) -> None:
    stream = unique("abw-stream")
    good, poison = add(client, stream, "fine"), add(client, stream, "poison")
    attempts: list[int] = []

    def handler(entry: StreamEntry) -> None:
        if entry.events[0].data == "poison":
            attempts.append(entry.deliveries)
            raise ValueError("cannot handle this one")

    consumer = StreamConsumer(
        client,
        handler,
        StreamConfig(streams=[stream], group="g", consumer="c1", min_idle=0.05, max_deliveries=3),
    )
    dead = f"{stream}:dead"
    drain(consumer, lambda: client.xlen(dead) == 1)
    assert attempts == [1, 2, 3]
    assert client.xpending(stream, "g")["pending"] == 0
    (_, fields), *_ = client.xrange(dead)
    letter = {k.decode(): v.decode() for k, v in fields.items()}
    assert letter["entry_id"] == poison and letter["deliveries"] == "3"
    assert letter["reason"] == "retries_exhausted" and "ValueError" in letter["error"]
    assert letter["channel"] == "chan" and letter["route"] == "route"
    assert consumer.handled == 1 and good != poison
    client.delete(stream, dead)


def test_killed_consumer_entries_are_recovered(client: redis.Redis) -> None:
    stream = unique("abw-stream")
    record, started = f"{stream}:record", f"{stream}:started"
    ids = [add(client, stream, d) for d in ("one", "two", "block", "four", "five")]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ABW_TEST_REDIS": REDIS_DB14,
        "ABW_TEST_RECORD": record,
        "ABW_TEST_STARTED": started,
    }
    argv = [
        sys.executable, "-m", "workers.streams", "--redis-url", REDIS_DB14, "--stream", stream,
        "--group", "g", "--consumer", "doomed", "--batch-size", "5", "--block", "0.2",
        "--handler", "tests.workers.stream_handlers:record_or_block", "--log-level", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    try:
        end = time.monotonic() + 10
        while client.llen(started) == 0:
            assert time.monotonic() < end and proc.poll() is None, "consumer never blocked"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-batch: entries 3-5 read, unacknowledged
        proc.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert [i.decode() for i in client.lrange(record, 0, -1)] == ids[:2]
    assert client.xpending(stream, "g")["pending"] == 3
    recovered: list[str] = []
    rescuer = StreamConsumer(
        client,
        lambda e: recovered.append(e.entry_id),
        StreamConfig(streams=[stream], group="g", consumer="rescuer", min_idle=0.2),
    )
    drain(rescuer, lambda: len(recovered) == 3)
    assert recovered == ids[2:]
    assert client.xpending(stream, "g")["pending"] == 0
    client.delete(stream, record, started)


def test_cli_requires_streams_and_handler() -> None:
    from workers.streams import main

    assert main([], env={}) == 2
