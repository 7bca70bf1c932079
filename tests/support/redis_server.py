"""A ``redis-server`` of the test's own, on a free loopback port, that it may break.

Fault tests never stop the shared Redis: they start a :class:`PrivateRedis`.
``stop()`` ends it gently (SIGTERM), ``kill()`` is an outage (SIGKILL: clients
see resets, then refused connections), ``start()`` brings it back on the same
port. A volatile server comes back empty; a ``durable`` one (append-only file,
fsync on every write) comes back with its data, as a broker's queues must.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.support.services import free_port
from tests.support.wait import eventually

__all__ = ["PrivateRedis"]


class PrivateRedis:
    """A private redis-server (module docstring)."""

    def __init__(self, workdir: Path, *, durable: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
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

    def start(self) -> PrivateRedis:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not on the PATH")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *(persistence if self.durable else ["--appendonly", "no"]),
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        eventually(self.up, 20, "the private redis-server to answer", interval=0.02)
        return self

    def stop(self) -> None:
        """End it gently (SIGTERM)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """An outage: SIGKILL, so clients see their connections reset, then refused."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
