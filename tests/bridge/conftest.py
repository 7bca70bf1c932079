"""Fixtures for bridge tests: the broker of a Celery test, its queue, and cleanup.

Shared fixtures (``prefix``, ``rclient``, ``private_redis``, ``emulator``) are in
tests/conftest.py; the services they use in :mod:`tests.support.services`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from tests.support.services import (
    AMQP_BROKER,
    REDIS_BROKER,
    amqp_available,
    redis_available,
)


@pytest.fixture(params=[REDIS_BROKER, AMQP_BROKER], ids=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    """A Celery broker URL: every test using it runs on Redis and on RabbitMQ."""
    url = str(request.param)
    if url.startswith("amqp") and not amqp_available():
        pytest.skip("RabbitMQ at 127.0.0.1:5672 is not running")
    if url.startswith("redis") and not redis_available(url):
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    return url


@contextlib.contextmanager
def fresh_queue(broker: str) -> Iterator[str]:
    """A new Celery queue name on ``broker``, deleted (with its Redis keys) afterwards."""
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
def queue(broker: str) -> Iterator[str]:
    """A fresh Celery queue on ``broker`` for this test."""
    with fresh_queue(broker) as name:
        yield name


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
