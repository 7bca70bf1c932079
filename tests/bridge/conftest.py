"""Fixtures for bridge tests: a unique key prefix on the shared Redis, and cleanup."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

REDIS_URL = os.environ.get("ABLY_BRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REDIS_BROKER = "redis://127.0.0.1:6379/15"
AMQP_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def amqp_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=[REDIS_BROKER, AMQP_BROKER], ids=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    """A Celery broker URL: every test using it runs on Redis and on RabbitMQ."""
    url = str(request.param)
    if url.startswith("amqp") and not amqp_available():
        pytest.skip("RabbitMQ at 127.0.0.1:5672 is not running")
    if url.startswith("redis") and not redis_available(url):
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    return url


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A fresh Celery queue name on ``broker``, deleted (with its Redis keys) afterwards."""
    name = f"ably-bridge-test-{uuid.uuid4().hex[:10]}"
    yield name
    cleanup = Celery("cleanup", broker=broker, set_as_current=False)
    try:
        with cleanup.connection_for_write() as conn:
            if broker.startswith("amqp"):
                conn.default_channel.queue_delete(name)
            else:
                client = redis.Redis.from_url(broker)
                client.delete(name, *client.keys(f"*{name}*"))
    finally:
        cleanup.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to this test."""
    return f"abtest:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def rclient(prefix: str) -> Iterator[redis.Redis]:
    """A client of the shared Redis; every key under this test's prefix is deleted after."""
    if not redis_available():
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A private redis-server on a free port that a test may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not on the PATH")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if redis_available(self.url):
                return
            time.sleep(0.02)
        raise RuntimeError("own redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _root_log_level_kept() -> Iterator[None]:
    """The root logger's level is the same after each test as before it.

    A Celery worker started in-process with ``loglevel="ERROR"`` sets the root
    logger to ERROR; our loggers inherit it, so a later test that reads the
    bridge's warnings (the status API's recent errors) would see none.
    """
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
