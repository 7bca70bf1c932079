"""``ably-bridge deadletter list|show|purge`` and replay's own cases, against real Redis.

Dead letters are written by the writers the product uses: the bridge's
:class:`~ably_bridge.bridge.deadletter.DeadLetterWriter` and the stream
consumer of :mod:`workers.streams`. (Replay after real faults, with a real
bridge and worker: ``test_deadletter_replay.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.envelope import Envelope, EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.commands.deadletter_support import REDIS_URL, ROOT, CliResult, run_cli
from tests.support.services import free_port, redis_available
from workers.streams import StreamConfig, StreamConsumer, StreamEntry

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

BUILDER = EnvelopeBuilder("app1", "site1")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield c
    c.close()


def envelope(channel: str, msg_id: str, data: Any = "hello", route: str = "main") -> Envelope:
    message = Message(id=msg_id, name="n", data=data, timestamp=1_700_000_000_000)
    return BUILDER.message(channel, message, route)


def write(stream: str, *letters: DeadLetter) -> None:
    c = redis.Redis.from_url(REDIS_URL)
    writer = DeadLetterWriter(c, stream)
    for letter in letters:  # one at a time: each gets its own stream id, in order
        assert writer.write(letter)
    c.close()


def config_file(path: Path, prefix: str, **delivery: Any) -> Path:
    raw: dict[str, Any] = {
        "app_id": "app1",
        "site": "site1",
        "ably": {"endpoint": "127.0.0.1", "port": 1, "tls": False},
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "dead_letter": {"stream": f"{prefix}:deadletter"},
        "delivery": delivery,
        "routes": [
            {
                "id": "main",
                "channels": ["chat:*"],
                "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> CliResult:
    return run_cli(capsys, "deadletter", *argv, stdin=stdin)


@pytest.fixture
def sample(prefix: str) -> str:
    """Four bridge dead letters on two routes and three channels; the stream's key."""
    stream = f"{prefix}:deadletter"
    write(
        stream,
        DeadLetter(Reason.REJECTED, "main", "chat:1", envelope("chat:1", "m1"), 0, "SinkError: no"),
        DeadLetter(Reason.OVERSIZED, "main", "chat:2", envelope("chat:2", "m2"), 40009, "too big"),
        DeadLetter(
            Reason.UNDECODABLE, "main", "chat:1",
            Message(id="m3", data="AAAA", encoding="utf-8/cipher+aes-128-cbc/base64"),
            40013, "cannot decode", "channel.message", "m3",
        ),
        DeadLetter(Reason.RETRIES_EXHAUSTED, "audit", "log", envelope("log", "m4", route="audit"),
                   0, "ConnectionError: down"),
    )  # fmt: skip
    return stream


def ids(result: CliResult) -> list[str]:
    return [json.loads(line)["id"] for line in result.out.splitlines()]


def test_list_filters_and_orders_newest_first(
    sample: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    every = [entry_id for entry_id, _ in client.xrange(sample)]
    result = cli(capsys, "list", "--stream", sample, "--json")
    assert result.code == 0
    assert ids(result) == every[::-1]
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert rows[0]["reason"] == "retries_exhausted" and rows[0]["origin"] == "bridge"
    assert "event" not in rows[0]  # list is a summary; show has the event
    assert rows[-1]["code"] == 0 and rows[1]["code"] == 40013

    by_route = cli(capsys, "list", "--stream", sample, "--json", "--route", "audit")
    assert ids(by_route) == [every[3]]
    by_glob = cli(capsys, "list", "--stream", sample, "--json", "--channel", "chat:*")
    assert ids(by_glob) == [every[2], every[1], every[0]]
    both = cli(capsys, "list", "--stream", sample, "--json", "--channel", "chat:1",
               "--reason", "undecodable")  # fmt: skip
    assert ids(both) == [every[2]]
    limited = cli(capsys, "list", "--stream", sample, "--json", "--limit", "2")
    assert ids(limited) == [every[3], every[2]]
    assert ids(cli(capsys, "list", "--stream", sample, "--json", "--origin", "worker")) == []


def test_list_time_window(
    sample: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    every = [entry_id for entry_id, _ in client.xrange(sample)]
    # A later entry, 10 s after the others (ids carry the write time).
    late_ms = int(every[-1].split("-")[0]) + 10_000
    client.xadd(sample, {"reason": "rejected", "route": "main", "channel": "chat:9",
                         "event": "{}"}, id=f"{late_ms}-0")  # fmt: skip
    since = cli(capsys, "list", "--stream", sample, "--json", "--since", str(late_ms - 5000))
    assert ids(since) == [f"{late_ms}-0"]
    until = cli(capsys, "list", "--stream", sample, "--json", "--until", str(late_ms - 5000))
    assert ids(until) == every[::-1]
    bad = cli(capsys, "list", "--stream", sample, "--since", "2h", "--until", "3h")
    assert bad.code == 2 and "--since is after --until" in bad.err


def test_list_table_and_show(
    sample: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    table = cli(capsys, "list", "--stream", sample)
    lines = table.out.splitlines()
    assert lines[0].split()[:4] == ["ID", "TIME", "ORIGIN", "REASON"]
    assert len(lines) == 5 and "4 shown of 4" in table.err
    assert "undecodable" in lines[2] and "cannot decode" in lines[2]

    undecodable = next(i for i, f in client.xrange(sample) if f["reason"] == "undecodable")
    shown = cli(capsys, "show", undecodable, "--stream", sample)
    assert shown.code == 0
    assert "reason:        undecodable" in shown.out
    assert "code:          40013" in shown.out
    assert '"encoding": "utf-8/cipher+aes-128-cbc/base64"' in shown.out  # the raw message
    as_json = json.loads(cli(capsys, "show", undecodable, "--stream", sample, "--json").out)
    assert as_json["event"]["id"] == "m3" and as_json["error"] == "cannot decode"

    missing = cli(capsys, "show", "1-0", "--stream", sample)
    assert missing.code == 1 and "no dead letter 1-0" in missing.err
    assert cli(capsys, "show", "not-an-id", "--stream", sample).code == 2


def test_purge_asks_and_deletes_only_the_selection(
    sample: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    every = [entry_id for entry_id, _ in client.xrange(sample)]
    refused = cli(capsys, "purge", "--stream", sample)
    assert refused.code == 2 and "--all" in refused.err

    dry = cli(capsys, "purge", "--stream", sample, "--channel", "chat:1", "--dry-run")
    assert dry.code == 0 and dry.out.split() == [every[0], every[2]]
    no = cli(capsys, "purge", "--stream", sample, "--channel", "chat:1", stdin="n\n")
    assert no.code == 1 and "Delete 2 dead letter(s)" in no.err and "nothing deleted" in no.err
    eof = cli(capsys, "purge", "--stream", sample, "--channel", "chat:1", stdin="")
    assert eof.code == 1  # no answer is no
    assert client.xlen(sample) == 4

    yes = cli(capsys, "purge", "--stream", sample, "--channel", "chat:1", stdin="y\n")
    assert yes.code == 0 and "deleted 2" in yes.err
    assert [i for i, _ in client.xrange(sample)] == [every[1], every[3]]

    forced = cli(capsys, "purge", "--stream", sample, every[3], "--yes", "--json")
    assert json.loads(forced.out) == {"stream": sample, "selected": 1, "deleted": 1}
    assert cli(capsys, "purge", "--stream", sample, "--all", "--yes").code == 0
    assert client.xlen(sample) == 0


def test_replay_keeps_what_cannot_go_and_says_why(
    prefix: str,
    sample: str,
    client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_file(tmp_path / "bridge.yaml", prefix, max_event_bytes=256)
    big = envelope("chat:3", "m5", data="x" * 400)
    write(sample, DeadLetter(Reason.OVERSIZED, "main", "chat:3", big, 40009, "too big"))
    result = cli(capsys, "replay", "-c", str(config), "--all")
    assert result.code == 1
    assert "route 'audit' is not in the configuration" in result.out
    assert "still undecodable (no cipher key applies)" in result.out
    assert "delivery.max_event_bytes is 256" in result.out
    assert "replayed 2 of 5" in result.err  # chat:1 m1 and chat:2 m2 (small enough)
    assert client.xlen(sample) == 3
    assert [json.loads(f["envelope"])["messages"][0]["id"]
            for _, f in client.xrange(f"{prefix}:s:chat:1")] == ["m1"]  # fmt: skip

    # With the limit raised, the oversized one goes too.
    raised = config_file(tmp_path / "raised.yaml", prefix, max_event_bytes=4096)
    again = cli(capsys, "replay", "-c", str(raised), "--reason", "oversized", "--json")
    report = json.loads(again.out)
    assert again.code == 0 and report["replayed"] == 1
    assert client.xlen(f"{prefix}:s:chat:3") == 1


def test_replay_needs_a_selection_and_a_config(
    sample: str, capsys: pytest.CaptureFixture[str], client: redis.Redis
) -> None:
    assert cli(capsys, "replay", "--stream", sample).code == 2
    both = cli(capsys, "replay", "--stream", sample, "--all", "--route", "main")
    assert both.code == 2 and "--all selects everything" in both.err
    no_config = cli(capsys, "replay", "--stream", sample, "--all", "--dry-run")
    assert no_config.code == 1
    assert no_config.out.count("needs the bridge configuration (-c)") == 4
    assert client.xlen(sample) == 4


def test_a_failing_target_keeps_the_entry_and_no_password_is_printed(
    prefix: str, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"redis://:s3cr3tpassw0rd@127.0.0.1:{free_port()}/0"  # nothing listens there
    raw = yaml.safe_load(config_file(tmp_path / "b.yaml", prefix).read_text())
    (tmp_path / "down-url").write_text(down)
    raw["routes"][0]["targets"][0]["url_file"] = str(tmp_path / "down-url")
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(raw))
    stream = f"{prefix}:deadletter"
    write(stream, DeadLetter(Reason.RETRIES_EXHAUSTED, "main", "chat:1",
                             envelope("chat:1", "m1"), 0, "ConnectionError"))  # fmt: skip
    result = cli(capsys, "replay", "-c", str(path), "--all")
    assert result.code == 1
    assert "failed" in result.out and "redis_stream target not confirmed" in result.out
    assert "s3cr3tpassw0rd" not in result.out + result.err
    assert client.xlen(stream) == 1

    unreachable = cli(capsys, "list", "--redis-url", down, "--stream", stream)
    assert unreachable.code == 1 and "ConnectionError" in unreachable.err
    assert "s3cr3tpassw0rd" not in unreachable.out + unreachable.err


def test_consumer_dead_letter_goes_back_to_its_stream_once(
    prefix: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = f"{prefix}:s:orders"
    client.xadd(stream, {"envelope": envelope("orders", "o1", {"total": 3}).to_json()})
    seen: list[str] = []

    def failing(entry: StreamEntry) -> None:
        raise RuntimeError("handler bug")

    def fixed(entry: StreamEntry) -> None:
        seen.append(entry.events[0].id or "")

    config = StreamConfig(streams=[stream], group="g", max_deliveries=1, block=0.05, min_idle=0)
    raw = redis.Redis.from_url(REDIS_URL)
    StreamConsumer(raw, failing, config).run_once()
    dead = f"{stream}:dead"
    assert client.xlen(dead) == 1

    listed = cli(capsys, "list", "--stream", dead, "--json")
    (row,) = [json.loads(line) for line in listed.out.splitlines()]
    assert row["origin"] == "consumer" and row["stream"] == stream and row["deliveries"] == 1

    dry = cli(capsys, "replay", "--stream", dead, "--all", "--dry-run")
    assert dry.code == 0 and f"-> stream {stream} (back to its consumers)" in dry.out
    done = cli(capsys, "replay", "--stream", dead, row["id"], "-v")
    assert done.code == 0 and "replayed" in done.out and "new entry" in done.out
    assert client.xlen(dead) == 0 and client.xlen(stream) == 2
    again = cli(capsys, "replay", "--stream", dead, row["id"])
    assert again.code == 0 and "no dead letters match" in again.err
    assert client.xlen(stream) == 2  # the second replay added nothing

    consumer = StreamConsumer(raw, fixed, config)
    while consumer.run_once(block=0.05):
        pass
    assert seen == ["o1"]
    raw.close()


def test_list_into_a_closed_pipe_ends_quietly(prefix: str) -> None:
    """``ably-bridge deadletter list | head -1``: no error when the reader goes away."""
    stream = f"{prefix}:deadletter"
    client = redis.Redis.from_url(REDIS_URL)
    writer = DeadLetterWriter(client, stream)
    letters = [DeadLetter(Reason.REJECTED, "main", f"chat:{i}", {"n": i}, 0, "e" * 80)
               for i in range(3000)]  # fmt: skip
    assert writer.write_many(letters) == 3000
    client.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ably_bridge.cli", "--log-level", "ERROR", "deadletter", "list",
         "--redis-url", REDIS_URL, "--stream", stream, "--limit", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"ID ")
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
