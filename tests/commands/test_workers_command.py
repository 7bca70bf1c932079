"""``ably-bridge workers`` against a real Celery worker running the ``ably.*`` tasks.

The worker's broker uses a key prefix (``ABLY_WORKER_REDIS_KEY_PREFIX``), as a
shared Redis would: the command reads the workers' own environment, so its
inspect broadcasts reach them. An ``ably.time`` task meets a 503 from the
emulator and waits for its retry (a long countdown), another task runs: the
snapshot shows one retrying with its error and next attempt, the other running.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from celery import Celery

from ably_bridge.emulator import Emulator
from tests.commands.deadletter_support import ROOT, celery_worker, run_cli, unique
from tests.readme_support import block
from tests.support.services import redis_available
from tests.support.wait import eventually
from workers import RetryPolicy, WorkerSettings, producers

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

DB = "redis://127.0.0.1:6379/14"


@pytest.fixture
def settings(emulator: Emulator) -> Iterator[WorkerSettings]:
    tag = unique("abwk")
    yield WorkerSettings(
        ably_key=emulator.root_key,
        client_options={"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        broker_url=DB,
        result_backend=DB,
        queue=tag,
        redis_key_prefix=f"{tag}:",
        retry=RetryPolicy(300.0, multiplier=2.0, max_delay=300, jitter=0.0, max_retries=3),
        visibility_timeout=3600,  # the retry's countdown must not trigger a redelivery
        broker_timeout=5.0,
        dedup_redis_url=DB,
        dedup_prefix=tag,
        result_expires=600,
    )
    client = redis.Redis.from_url(DB)
    keys = list(client.scan_iter(match=f"{tag}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' environment, as the operator's shell would have it."""
    monkeypatch.setenv("CELERY_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", settings.result_backend or "")
    monkeypatch.setenv("ABLY_WORKER_REDIS_KEY_PREFIX", settings.redis_key_prefix or "")
    monkeypatch.setenv("ABLY_WORKER_QUEUE", settings.queue or "")


def snapshot(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(capsys, "workers", "--json", "--timeout", "1", *extra)
    return result.code, json.loads(result.out)


def test_workers_shows_a_retrying_and_a_running_ably_task(
    emulator: Emulator,
    settings: WorkerSettings,
    env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    release = threading.Event()

    def prepare(app: Celery) -> None:
        @app.task(name="ably.test_block", shared=False)  # type: ignore[untyped-decorator]
        def block() -> None:
            release.wait(30)

    try:
        with celery_worker(settings, prepare=prepare, concurrency=2) as app:
            emulator.faults.fail_rest(count=1, status=503, code=50300, path_prefix="/time")
            receipt = producers.time(app=app)

            def retrying() -> dict[str, Any] | None:
                _, snap = snapshot(capsys)
                found = [t for t in snap["tasks"] if t["id"] == receipt.id]
                return found[0] if found and found[0]["state"] == "retrying" else None

            task = eventually(retrying, 30, "ably.time retrying")
            assert task["name"] == "ably.time" and task["backend_state"] == "RETRY"
            assert task["eta"] and "503" in (task["error"] or ""), task

            app.send_task("ably.test_block", queue=settings.queue)
            code, snap = eventually(
                lambda: (s := snapshot(capsys))[1]["tasks"] and any(
                    t["state"] == "running" for t in s[1]["tasks"]) and s,
                20, "a running task",
            )  # fmt: skip
            assert code == 0 and snap["problems"] == []
            (worker,) = snap["workers"]
            assert settings.queue in worker["queues"] and worker["active"] == 1
            assert "ably.time" in worker["registered"]
            running = [t for t in snap["tasks"] if t["state"] == "running"]
            assert [t["name"] for t in running] == ["ably.test_block"]
            assert "password" not in snap["broker"]

            # The table says the same for people.
            table = run_cli(capsys, "workers", "--timeout", "1")
            assert table.code == 0
            line = next(x for x in table.out.splitlines() if receipt.id in x)
            assert line.split()[:2] == ["retrying", "ably.time"] and " in " in line

            # A bridge configuration: one Celery target a worker has, one none has.
            config = tmp_path / "bad.yaml"
            config.write_text(yaml.safe_dump(bridge_config(emulator, settings, "chat.nobody")))
            code, checked = snapshot(capsys, "-c", str(config))
            assert code == 1
            verdicts = {(c["task"], c["ok"]) for c in checked["targets"]}
            assert verdicts == {("ably.time", True), ("chat.nobody", False)}
            assert any("chat.nobody" in p and "unknown_target" in p for p in checked["problems"])

            # docs/operating-console.md's blocks, as written, against this worker.
            good = tmp_path / "bridge.yaml"
            good.write_text(yaml.safe_dump(bridge_config(emulator, settings)))
            the_workers_block(capsys, tmp_path, receipt.id)
            the_celery_inspect_block(tmp_path, receipt.id)
    finally:
        release.set()


def the_workers_block(capsys: pytest.CaptureFixture[str], where: Path, retrying: str) -> None:
    (command,) = block("console-workers").commands()
    argv = shlex.split(command)
    assert argv[:2] == ["ably-bridge", "workers"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        result = run_cli(capsys, *argv[1:])
    assert result.code == 0, result.out + result.err
    assert (
        "route main: task ably.time on queue" in result.out and ": ok (1 worker(s))" in result.out
    )
    assert any(line.split()[:2] == ["retrying", "ably.time"] and retrying in line
               for line in result.out.splitlines())  # fmt: skip


def the_celery_inspect_block(where: Path, retrying: str) -> None:
    """``celery -A workers inspect ...`` in a shell with the workers' environment."""
    scheduled, active, registered = block("console-celery-inspect").commands()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(command: str) -> str:
        argv = shlex.split(command)
        assert argv[0] == "celery"
        done = subprocess.run(
            [sys.executable, "-m", "celery", *argv[1:]],
            env=env, cwd=where, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    waiting = json.loads(run(scheduled))
    (entries,) = waiting.values()
    (entry,) = [e for e in entries if e["request"]["id"] == retrying]
    assert entry["request"]["name"] == "ably.time" and entry["eta"]
    (running,) = json.loads(run(active)).values()
    assert [t["name"] for t in running] == ["ably.test_block"]
    assert "ably.time" in run(registered)


def bridge_config(emulator: Emulator, settings: WorkerSettings, *missing: str) -> dict[str, Any]:
    tasks = ["ably.time", *missing]
    return {
        "app_id": "app",
        "ably": {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        "redis": {"url": DB},
        "celery": {"broker_url": settings.broker_url},
        "routes": [
            {
                "id": "main",
                "channels": ["a"],
                "targets": [{"type": "celery", "task": t, "queue": settings.queue} for t in tasks],
            }
        ],
    }


def test_no_worker_is_a_problem(
    settings: WorkerSettings, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, snap = snapshot(capsys)
    assert (
        code == 1 and snap["workers"] == [] and snap["problems"] == ["no worker answered within 1s"]
    )


def test_a_broker_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    url = "redis://:hunter2hunter2@127.0.0.1:1/0"  # nothing listens there
    result = run_cli(capsys, "workers", "--broker", url, "--backend", url, "--timeout", "1")
    assert result.code == 1
    assert "hunter2hunter2" not in result.out + result.err
