"""Services a worker test owns and may break: a private redis-server and Celery worker processes.

:class:`OwnedRedis` runs ``redis-server`` on a free loopback port with an
append-only file synced on every write, so a test can kill it (an outage: the
worker sees connection refused) and start it again on the same port with the
broker's queues intact. :func:`celery_worker` runs ``celery -A workers worker``
configured only through the environment, in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: object, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class OwnedRedis:
    """A private redis-server a test may kill and restart on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def up(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not on the PATH")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.up, 20, "the owned redis-server to answer", interval=0.05)

    def kill(self) -> None:
        """An outage: SIGKILL, so clients see their connections reset, then refused."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def owned_redis(tmp_path: Path) -> Iterator[OwnedRedis]:
    server = OwnedRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _passed_through() -> dict[str, str]:
    """Variables a worker inherits from the test run: the shortcut switch
    (``ABLY_BRIDGE_NO_SHORTCUTS=... pytest`` runs the workers on the public paths too)."""
    return {k: v for k, v in os.environ.items() if k == "ABLY_BRIDGE_NO_SHORTCUTS"}


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str],
    name: str,
    *,
    pool: str = "threads",
    concurrency: int = 1,
    log: Path | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A workers worker`` with ``env``; SIGKILLed with its group on exit."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [CELERY, "-A", "workers", "worker", "-P", pool, "-c", str(concurrency),
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "INFO" if log is not None else "WARNING", *extra],
        cwd=ROOT,
        env={**env, **_passed_through(), "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if log is not None:
            out.close()  # type: ignore[union-attr]
