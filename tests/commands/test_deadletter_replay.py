"""``ably-bridge deadletter replay`` end to end: a real bridge, real Redis, a real Celery worker.

The bridge runs as a process against the emulator with a **wrong cipher key**
for one channel, and a Celery target whose **task name no worker registers**.
Its dead letters (undecodable events, written by the bridge) and the worker's
(unknown task, written by ``workers``) land in one stream. After the fixes
(the right key in the environment, a worker that registers the task) the
replay delivers every event once; a second replay of the same dead letters
(written back, as after a crash between delivery and removal) delivers nothing
new.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from celery import Celery
from celery.signals import task_postrun

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks import Delivery, SinkOptions, create_sink
from ably_bridge.emulator import Emulator
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from ably_bridge.rest.client import AblyRest
from tests.commands.deadletter_support import (
    AMQP_URL,
    BROKER_URL,
    REDIS_URL,
    bridge_process,
    celery_worker,
    cleanup_queue,
    run_cli,
    unique,
)
from tests.support.services import amqp_available, redis_available
from tests.support.wait import eventually
from workers import WorkerSettings
from workers.consumers import envelope_task

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

RIGHT_KEY = base64.b64encode(bytes(range(16))).decode()
WRONG_KEY = base64.b64encode(bytes(range(100, 116))).decode()
TASK = "chat.handle"


@pytest.fixture
def queue() -> Iterator[str]:
    name = unique("abdlq")
    yield name
    cleanup_queue(name)


def write_config(path: Path, emulator: Emulator, prefix: str, queue: str) -> Path:
    raw: dict[str, Any] = {
        "ably": {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "celery": {"broker_url": BROKER_URL},
        "dead_letter": {"stream": f"{prefix}:deadletter"},
        "delivery": {"retry": {"initial": 0.1, "max_delay": 0.5, "jitter": 0}},
        "routes": [
            {
                "id": "main",
                "channels": ["secret", "plain"],
                "sources": ["message"],
                "ciphers": [{"channels": ["secret"], "key_env": "DL_CIPHER"}],
                "targets": [
                    {"type": "redis_stream", "key": prefix + ":s:{channel}"},
                    {"type": "celery", "task": TASK, "queue": queue},
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def worker_settings(prefix: str, queue: str, broker: str = BROKER_URL) -> WorkerSettings:
    return WorkerSettings(
        broker_url=broker,
        queue=queue,
        visibility_timeout=5.0,
        restore_interval=1.0,
        broker_timeout=5.0,
        dedup_redis_url=REDIS_URL,
        dedup_prefix=prefix,  # its dead letters go to <prefix>:deadletter, as the bridge's
    )


class Handled:
    """The ``chat.handle`` task of the fixed worker: records each event it handles."""

    def __init__(self, settings: WorkerSettings, prefix: str) -> None:
        self.settings = settings
        self.key = f"{prefix}:handled"
        self.client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.finished: list[str] = []  # task names run to the end, in order
        self.ids: list[str] = []  # their task ids

    def register(self, app: Celery) -> None:
        @envelope_task(app, name=TASK, settings=self.settings)  # type: ignore[untyped-decorator]
        def handle(event: Any) -> None:
            self.client.rpush(self.key, json.dumps([event.channel, event.id, event.data]))

        @app.task(name="test.sentinel", shared=False)  # type: ignore[untyped-decorator]
        def sentinel() -> None:
            return None

        def finished(sender: Any = None, **_: Any) -> None:
            if getattr(sender, "app", None) is app:
                self.finished.append(sender.name)
                self.ids.append(str(_.get("task_id")))

        task_postrun.connect(finished, weak=False)
        self._receiver = finished

    def events(self) -> list[list[Any]]:
        return [json.loads(item) for item in self.client.lrange(self.key, 0, -1)]

    def drained(self, app: Celery, queue: str) -> None:
        """Wait until every task sent before now ran (one worker thread: FIFO)."""
        before = self.finished.count("test.sentinel")
        app.send_task("test.sentinel", queue=queue)
        eventually(lambda: self.finished.count("test.sentinel") > before, 20, "the sentinel")

    def close(self) -> None:
        task_postrun.disconnect(self._receiver)
        self.client.close()


def publish(emulator: Emulator, key: str) -> None:
    with AblyRest(key=key, endpoint="127.0.0.1", port=emulator.port, tls=False) as rest:
        secret = rest.channels.get("secret", cipher=RIGHT_KEY)
        for i in range(3):
            secret.publish("s", f"secret-{i}")
        plain = rest.channels.get("plain")
        for i in range(2):
            plain.publish("p", {"n": i})


def test_replay_after_fixing_the_cipher_key_and_the_task_name(
    emulator: Emulator,
    key: str,
    prefix: str,
    queue: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path / "bridge.yaml", emulator, prefix, queue)
    settings = worker_settings(prefix, queue)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    dead = f"{prefix}:deadletter"

    # 1. The faults: a wrong cipher key, and a worker without the route's task.
    with (
        celery_worker(settings),
        bridge_process(config, {"ABLY_KEY": key, "DL_CIPHER": WRONG_KEY}, tmp_path),
    ):
        publish(emulator, key)
        eventually(lambda: client.xlen(dead) >= 5, 30, "five dead letters")
    originals = client.xrange(dead)
    assert client.xlen(f"{prefix}:s:secret") == 0
    assert client.xlen(f"{prefix}:s:plain") == 2  # delivered to the stream target

    monkeypatch.setenv("ABLY_KEY", key)
    monkeypatch.setenv("DL_CIPHER", WRONG_KEY)
    listed = run_cli(capsys, "deadletter", "list", "-c", str(config), "--json")
    assert listed.code == 0, listed.err
    rows = [json.loads(line) for line in listed.out.splitlines()]
    assert sorted((r["origin"], r["reason"]) for r in rows) == [
        ("bridge", "undecodable")] * 3 + [("worker", "unknown_target")] * 2  # fmt: skip
    assert {r["task"] for r in rows if r["origin"] == "worker"} == {TASK}

    # 2. Not fixed yet: the dry run says so and sends nothing.
    still = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all", "--dry-run")
    assert still.code == 1
    assert still.out.count("still undecodable") == 3, still.out
    # The cipher key never shows, right or wrong.
    assert WRONG_KEY not in still.out + still.err and RIGHT_KEY not in still.out + still.err

    # 3. The fixes: the right key, and a worker that registers the task.
    monkeypatch.setenv("DL_CIPHER", RIGHT_KEY)
    dry = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all", "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert dry.out.count("would replay") == 5
    assert client.xlen(dead) == 5 and client.xlen(f"{prefix}:s:secret") == 0

    handled = Handled(settings, prefix)
    try:
        with celery_worker(settings, prepare=handled.register) as app:
            done = run_cli(
                capsys, "deadletter", "replay", "-c", str(config), "--all", "--json", "--progress"
            )
            assert done.code == 0, done.out + done.err
            report = json.loads(done.out)
            assert (report["selected"], report["replayed"], report["failed"]) == (5, 5, 0)
            assert "replay [" in done.err and "100%" in done.err  # the progress bar
            assert client.xlen(dead) == 0  # removed once confirmed
            eventually(lambda: len(handled.events()) >= 5, 20, "five handled events")
            handled.drained(app, queue)

            # Decoded with the fixed key: in the stream target and in the task.
            secret_stream = [
                json.loads(f["envelope"])["messages"][0]["data"]
                for _, f in client.xrange(f"{prefix}:s:secret")
            ]
            assert sorted(secret_stream) == ["secret-0", "secret-1", "secret-2"]
            first = handled.events()
            assert sorted(str(e[2]) for e in first) == sorted(
                ["secret-0", "secret-1", "secret-2", str({"n": 0}), str({"n": 1})]
            )

            # 4. Replay twice delivers once: the dead letters written back (as after a
            # crash between delivery and removal) and replayed again.
            for _, fields in originals:
                client.xadd(dead, fields)
            again = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all")
            assert again.code == 0, again.out + again.err
            assert client.xlen(dead) == 0
            handled.drained(app, queue)
            assert sorted(map(str, handled.events())) == sorted(map(str, first))
            assert client.xlen(f"{prefix}:s:secret") == 3
            assert client.xlen(f"{prefix}:s:plain") == 2
    finally:
        handled.close()
        client.close()


def test_replay_to_a_renamed_task_goes_through_the_celery_sink(
    prefix: str,
    queue: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    emulator: Emulator,
    key: str,
) -> None:
    """The other fix for a missing task: the route now names a task the workers have."""
    config = write_config(tmp_path / "bridge.yaml", emulator, prefix, queue)
    settings = worker_settings(prefix, queue)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    dead = f"{prefix}:deadletter"
    envelope = {
        "source": "channel.message", "appId": "app", "channel": "plain", "site": "s",
        "ruleId": "main", "timestamp": 1_700_000_000_000,
        "messages": [{"id": "msg-1:0", "name": "p", "timestamp": 1_700_000_000_000, "data": "x"}],
    }  # fmt: skip
    with celery_worker(settings) as app:  # no worker registers "chat.old"
        app.send_task("chat.old", args=[envelope], task_id="old-id", queue=queue)
        eventually(lambda: client.xlen(dead) == 1, 20, "the worker's dead letter")

    monkeypatch.setenv("ABLY_KEY", key)
    monkeypatch.setenv("DL_CIPHER", RIGHT_KEY)
    handled = Handled(settings, prefix)
    try:
        with celery_worker(settings, prepare=handled.register) as app:
            dry = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all", "--dry-run")
            assert dry.code == 0, dry.out
            assert f"-> celery {TASK}" in dry.out and "not a target of route" in dry.out
            done = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all")
            assert done.code == 0, done.out + done.err
            eventually(lambda: handled.events(), 20, "the handled event")
            handled.drained(app, queue)
            assert handled.events() == [["plain", "msg-1:0", "x"]]
            assert client.xlen(dead) == 0
    finally:
        handled.close()
        client.close()


@pytest.mark.parametrize("broker", [BROKER_URL, AMQP_URL], ids=["redis", "amqp"])
def test_a_worker_dead_letter_goes_again_with_its_task_id_once(
    broker: str,
    prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    emulator: Emulator,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fix is a worker that registers the task: the task goes again as the bridge sent it."""
    if broker.startswith("amqp") and not amqp_available():
        pytest.skip("RabbitMQ at 127.0.0.1:5672 is not running")
    queue = unique("abdlq")
    raw = yaml.safe_load(write_config(tmp_path / "b.yaml", emulator, prefix, queue).read_text())
    del raw["celery"]  # a password belongs in the environment, not the file
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = worker_settings(prefix, queue, broker)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    dead = f"{prefix}:deadletter"
    message = Message(id="evt-1:0", name="p", data="once", timestamp=1_700_000_000_000)
    envelope = EnvelopeBuilder("app", "site").message("plain", message, "main")
    target = CeleryTarget(task=TASK, queue=queue)
    sent_id = celery_task_id("main", TASK, envelope.dedup_key)
    handled = Handled(settings, prefix)
    try:
        with celery_worker(settings):  # registers no chat.handle
            sink = create_sink("celery", broker, SinkOptions(key_prefix=prefix))
            assert sink.deliver([Delivery(envelope, target)])[0].confirmed  # as the bridge does
            sink.close()
            eventually(lambda: client.xlen(dead) == 1, 20, "the worker's dead letter")
        ((_, fields),) = client.xrange(dead)
        monkeypatch.setenv("ABLY_KEY", key)
        monkeypatch.setenv("DL_CIPHER", RIGHT_KEY)
        monkeypatch.setenv("CELERY_BROKER_URL", broker)
        with celery_worker(settings, prepare=handled.register) as app:
            dry = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all", "--dry-run")
            assert "published again with its own id" in dry.out and sent_id in dry.out
            for _ in range(2):  # the second time as after a crash before the removal
                done = run_cli(capsys, "deadletter", "replay", "-c", str(config), "--all")
                assert done.code == 0, done.out + done.err
                assert client.xlen(dead) == 0
                handled.drained(app, queue)
                client.xadd(dead, fields)
            assert handled.events() == [["plain", "evt-1:0", "once"]]
            runs = [i for n, i in zip(handled.finished, handled.ids, strict=True) if n == TASK]
            assert runs == [sent_id, sent_id]  # the same task id both times, run once
    finally:
        handled.close()
        client.close()
        cleanup_queue(queue, broker)
