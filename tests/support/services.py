"""The shared services the tests use, whether they answer, and free loopback ports."""

from __future__ import annotations

import os
import socket

import redis

__all__ = [
    "AMQP_BROKER",
    "REDIS_BROKER",
    "REDIS_URL",
    "amqp_available",
    "free_port",
    "redis_available",
]

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


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
