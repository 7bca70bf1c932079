"""``ably-bridge deadletter`` on a Redis Cluster (issue 21): a consumer's dead letter goes
back to its stream once, though the two streams live in different slots."""

from __future__ import annotations

import json
import uuid

import pytest
from redis.crc import key_slot

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.cluster_support import LocalCluster
from tests.commands.deadletter_support import CliResult, run_cli
from workers.streams import StreamConfig, StreamConsumer, StreamEntry


def cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> CliResult:
    return run_cli(capsys, "deadletter", argv[0], "--redis-url", url, *argv[1:])


def test_consumer_dead_letter_goes_back_across_slots_once(
    redis_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_cluster.url
    stream = f"dl{uuid.uuid4().hex[:8]}:orders"
    dead = f"{stream}:dead"
    assert key_slot(stream.encode()) != key_slot(dead.encode())
    client = open_redis(url)
    message = Message(id="o1", name="n", data={"total": 3}, timestamp=1_700_000_000_000)
    client.xadd(
        stream, {"envelope": EnvelopeBuilder("a", "s").message("orders", message, "main").to_json()}
    )

    def failing(entry: StreamEntry) -> None:
        raise RuntimeError("handler bug")

    config = StreamConfig(streams=[stream], group="g", max_deliveries=1, block=0.05, min_idle=0)
    StreamConsumer(client, failing, config).run_once()
    assert client.xlen(dead) == 1

    listed = cli(capsys, url, "list", "--stream", dead, "--json")
    (row,) = [json.loads(line) for line in listed.out.splitlines()]
    assert row["origin"] == "consumer" and row["stream"] == stream
    done = cli(capsys, url, "replay", "--stream", dead, row["id"], "-v")
    assert done.code == 0 and "new entry" in done.out, done.out + done.err
    assert client.xlen(dead) == 0 and client.xlen(stream) == 2
    again = cli(capsys, url, "replay", "--stream", dead, row["id"])
    assert again.code == 0 and client.xlen(stream) == 2  # the second replay added nothing

    seen: list[str] = []
    consumer = StreamConsumer(client, lambda e: seen.append(e.events[0].id or ""), config)
    while consumer.run_once(block=0.05):
        pass
    assert seen == ["o1"]
    client.close()
