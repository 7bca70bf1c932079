"""What the dead-letter tool's tests share: a real bridge process, a real Celery worker.

* :class:`BridgeProcess` - ``ably-bridge run`` as a child process with its own
  health port, waited on through ``/readyz``;
* :func:`celery_worker` - an in-process Celery worker of :func:`workers.create_app`
  (so it dead-letters unknown task names as deployed workers do), with extra
  tasks registered by the test;
* :func:`run_cli` - ``ably_bridge.cli.main`` in-process with stdin, returning
  the exit code and the captured output.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu.asynchronous import set_event_loop

from ably_bridge.cli import main
from tests.support.services import free_port
from tests.support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ABLY_BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/0")
BROKER_URL = "redis://127.0.0.1:6379/15"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class BridgeProcess:
    """One ``ably-bridge run`` process with the given extra environment."""

    def __init__(self, config: Path, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"bridge-{self.port}.log"
        self._log = self.log.open("wb")
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        full.pop("REDIS_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ably_bridge.cli", "run", "--config", str(config),
             "--health-port", str(self.port), "--log-format", "text"],
            env=full, stdout=subprocess.DEVNULL, stderr=self._log, cwd=str(ROOT),
        )  # fmt: skip

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the bridge exited:\n{self.log.read_text()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def bridge_process(config: Path, env: dict[str, str], tmp: Path) -> Iterator[BridgeProcess]:
    bridge = BridgeProcess(config, env, tmp)
    try:
        eventually(bridge.ready, 30, "bridge readiness")
        yield bridge
    finally:
        bridge.stop()


@contextlib.contextmanager
def celery_worker(
    settings: Any, prepare: Callable[[Celery], None] | None = None, concurrency: int = 1
) -> Iterator[Celery]:
    """A real worker (threads pool) of ``workers.create_app(settings)``, in this process."""
    from workers import create_app

    app = create_app(unique("dlw"), settings)
    if prepare is not None:
        prepare(app)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=concurrency,
            perform_ping_check=False,
            shutdown_timeout=20,
            loglevel="WARNING",
        ):
            yield app
    finally:
        app.close()
        set_event_loop(None)  # the next in-process worker must not inherit this one's hub


def cleanup_queue(queue: str, broker: str = BROKER_URL) -> None:
    """Delete a test's Celery queue: its Redis keys, or the RabbitMQ queue."""
    if broker.startswith("amqp"):
        app = Celery("cleanup", broker=broker, set_as_current=False)
        with contextlib.suppress(Exception), app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()
        return
    client = redis.Redis.from_url(broker)
    keys = [queue, *client.keys(f"*{queue}*")]
    client.delete(*keys)
    client.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> CliResult:
    """``ably-bridge ARGV`` in this process; ``stdin`` is what the user types."""
    capsys.readouterr()
    old = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = old
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
