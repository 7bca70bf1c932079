"""Issue 17 as a prober sees it: ``ably-bridge run`` as a real process, on loopback.

* A wrong ``ABLY_KEY``: the log names 40101 once, ``/readyz`` and ``/healthz`` are 503
  and say why.
* Passwords in ``REDIS_URL`` (``?password=``) and ``CELERY_BROKER_URL`` (userinfo), on a
  Redis of the test's own that requires one: no log line and no ``/metrics`` label
  shows them; an adversarial channel name on a backtracking-prone route is delivered
  like any other, and SIGTERM stops the process at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from ably_bridge.emulator import Emulator
from tests.bridge.test_cli_run import ROOT, rest_for
from tests.support.services import free_port
from tests.support.wait import eventually

PASSWORD = "pw-7Zq-redis-only-here"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own that requires ``PASSWORD``; its port."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on the PATH")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=1)
    try:
        eventually(lambda: _pings(client), timeout=10, what="redis-server")
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Bridge:
    """``ably-bridge run`` with the given environment; its log is JSON lines."""

    def __init__(self, config: dict[str, Any], env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        path = tmp / "bridge.yaml"
        path.write_text(yaml.safe_dump(config))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ABLY_", "REDIS_"))}
        self.log = tmp / "bridge.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ably_bridge.cli", "run", "--config", str(path),
             "--health-port", str(self.port)],
            env={**base, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            cwd=str(ROOT),
        )  # fmt: skip

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except requests.RequestException:
            return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log_file.close()


def config_for(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "log_level": "DEBUG",
        "ably": {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        "routes": [
            {"id": "main", "channels": ["chat:*"],
             "discover": {"prefixes": ["chat:"], "interval": 1},
             "targets": [{"type": "redis_stream", "key": "hard:{channel}"}]},
        ],
    }  # fmt: skip
    raw.update(extra)
    return raw


def test_a_wrong_key_is_logged_once_and_fails_the_probes(
    emulator: Emulator, key: str, tmp_path: Path
) -> None:
    wrong = key.split(":")[0] + ":not-the-secret-of-this-key"
    raw = config_for(emulator, redis={"url": "redis://127.0.0.1:6379/0"})
    raw["routes"][0]["channels"] = ["chat:a", "chat:b", "chat:c"]
    bridge = Bridge(raw, {"ABLY_KEY": wrong}, tmp_path)
    try:
        eventually(lambda: (r := bridge.get("/healthz")) is not None and r.status_code == 503,
                   what="/healthz 503")  # fmt: skip
        health = bridge.get("/healthz")
        ready = bridge.get("/readyz")
        assert health is not None and ready is not None and ready.status_code == 503
        (problem,) = health.json()["problems"]
        assert problem.startswith("realtime connection 0 failed: Ably error 40101")
        assert "check the Ably key (ABLY_KEY or ably.key_file)" in problem
        assert any("Ably error 40101" in p for p in ready.json()["problems"])
    finally:
        assert bridge.stop() == 0
    log = bridge.log.read_text()
    coded = [line for line in log.splitlines() if '"code": 40101' in line]
    assert len(coded) == 1 and '"level": "ERROR"' in coded[0]
    assert "not-the-secret-of-this-key" not in log


def test_passwords_stay_out_of_logs_and_metrics_and_a_hostile_name_changes_nothing(
    emulator: Emulator, key: str, locked_redis: int, tmp_path: Path
) -> None:
    redis_url = f"redis://127.0.0.1:{locked_redis}/0?password={PASSWORD}"
    broker_url = f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/1"
    raw = config_for(emulator)
    raw["routes"].append(
        {"id": "rooms", "channels": ["re:^room-(a+)+$"],
         "discover": {"prefixes": ["room-"], "interval": 1},
         "targets": [{"type": "redis_stream", "key": "hard:{channel}"},
                     {"type": "celery", "task": "hard.handle"}]}
    )  # fmt: skip
    env = {"ABLY_KEY": key, "REDIS_URL": redis_url, "CELERY_BROKER_URL": broker_url}
    bridge = Bridge(raw, env, tmp_path)
    rest = rest_for(emulator, key)
    client = redis.Redis(port=locked_redis, password=PASSWORD)
    try:
        eventually(lambda: (r := bridge.get("/readyz")) is not None and r.ok, what="ready")
        hostile = "room-" + "a" * 64 + "!"
        rest.channels.get(hostile).publish("e", "x", id="hostile-1")
        rest.channels.get("chat:lobby").publish("e", "y", id="plain-1")
        eventually(lambda: client.xlen("hard:chat:lobby") == 1, what="delivery after it")
        assert not client.exists(f"hard:{hostile}")  # the regex does not match it
        rest.channels.get("room-aaa").publish("e", "z", id="room-1")
        eventually(lambda: client.xlen("hard:room-aaa") == 1, timeout=30, what="discovered")
        broker = redis.Redis(port=locked_redis, password=PASSWORD, db=1)
        eventually(lambda: broker.llen("celery") == 1, what="the task sent")
        broker.close()
        metrics = bridge.get("/metrics")
        assert metrics is not None and metrics.ok
        assert PASSWORD not in metrics.text
        assert 'sink="redis_stream:redis://127.0.0.1:' in metrics.text
        assert "?password=***" in metrics.text and "redis://:***@" in metrics.text
        started = time.monotonic()
    finally:
        code = bridge.stop()
        rest.close()
        client.close()
    assert code == 0 and time.monotonic() - started < 30  # SIGTERM is heard at once
    log = bridge.log.read_text()
    assert PASSWORD not in log
    assert "password=***" in log  # the sinks are named, with the password masked
