"""``ably-bridge run`` as a real process: config errors, readiness, SIGHUP, SIGTERM, SIGKILL.

The bridge runs as ``python -m ably_bridge.cli run`` against an in-process
emulator and the shared Redis (unique key prefix per test). The crash test
kills it with SIGKILL while a publisher runs and checks that every message id
lands exactly once, in order, in its channel's stream.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.models import Message
from ably_bridge.rest.client import AblyRest
from tests.support.services import REDIS_URL, free_port, redis_available
from tests.support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]


def write_config(
    path: Path,
    emulator: Emulator,
    prefix: str,
    channels: list[str],
    *,
    ably: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """A bridge configuration file: ``channels`` into ``<prefix>:s:<channel>`` streams.

    ``ably`` adds settings to the ``ably`` section; other ``sections`` are added as given.
    """
    raw: dict[str, Any] = {
        "log_level": "INFO",
        "ably": {"endpoint": "127.0.0.1", "port": emulator.port, "tls": False, **(ably or {})},
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
        "dead_letter": {"stream": f"{prefix}:deadletter"},
        "delivery": {"retry": {"initial": 0.1, "max_delay": 0.5, "jitter": 0}},
        "routes": [
            {
                "id": "main",
                "channels": channels,
                "sources": ["message"],
                "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
            }
        ],
    }
    raw.update(sections)
    path.write_text(yaml.safe_dump(raw))
    return path


class Bridge:
    """One ``ably-bridge run`` process."""

    def __init__(self, config: Path, key: str, tmp: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "ABLY_KEY": key, "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        self.log = tmp / f"bridge-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ably_bridge.cli", "run", "--config", str(config),
             "--health-port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            cwd=str(ROOT),
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        eventually(
            lambda: self.ready() or self.proc.poll() is not None, timeout, "bridge readiness"
        )
        assert self.proc.poll() is None, self.log.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log_file.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log_file.close()

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def ids_in(client: redis.Redis, stream: str) -> list[str]:
    out = []
    for _, fields in client.xrange(stream):  # type: ignore[union-attr]
        env = json.loads(fields[b"envelope"])
        if env["source"] == "channel.message":
            out.append(env["messages"][0]["id"])
    return out


def rest_for(emulator: Emulator, key: str) -> AblyRest:
    return AblyRest(
        key=key, endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip


# ---------------------------------------------------------------------------


def test_invalid_config_exits_1_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: []\nably: {key: app.key:secret}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ably_bridge.cli", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={k: v for k, v in os.environ.items() if k not in ("ABLY_KEY", "REDIS_URL")},
        timeout=60,
    )
    assert proc.returncode == 1
    assert "ably.key: an Ably key must not be written in the config file" in proc.stderr
    assert "routes: must be a non-empty list" in proc.stderr
    assert "secret" not in proc.stderr.replace("key_file", "")


def test_run_parser_requires_a_config() -> None:
    from ably_bridge.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run"])
    args = build_parser().parse_args(["run", "-c", "x.yaml", "--health-port", "0"])
    assert args.config == "x.yaml" and args.health_port == 0


@pytest.mark.skipif(not redis_available(), reason="Redis is not running")
def test_run_reload_and_graceful_stop(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "bridge.yaml", emulator, prefix, ["one"])
    rest = rest_for(emulator, key)
    bridge = Bridge(config, key, tmp_path)
    try:
        bridge.wait_ready()
        metrics = requests.get(f"http://127.0.0.1:{bridge.port}/metrics", timeout=5).text
        assert 'ably_bridge_channels{phase="live"} 1' in metrics
        assert requests.get(f"http://127.0.0.1:{bridge.port}/healthz", timeout=5).ok
        rest.channels.get("one").publish("e", "1", id="one-1")
        eventually(lambda: ids_in(rclient, f"{prefix}:s:one") == ["one-1"], what="first")

        write_config(config, emulator, prefix, ["one", "two"])
        bridge.signal(signal.SIGHUP)
        eventually(
            lambda: (
                'phase="live"} 2'
                in requests.get(f"http://127.0.0.1:{bridge.port}/metrics", timeout=5).text
            ),
            what="reloaded",
        )
        rest.channels.get("two").publish("e", "2", id="two-1")
        eventually(lambda: ids_in(rclient, f"{prefix}:s:two") == ["two-1"], what="second")

        bridge.signal(signal.SIGTERM)
        assert bridge.wait() == 0
    finally:
        bridge.kill()
        rest.close()
    records = bridge.log_records()
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    messages = [r["message"] for r in records]
    assert any(m.startswith("reloaded: 1 route(s), 2 channel(s)") for m in messages)
    assert any(m.startswith("bridge stopped") for m in messages)
    assert key.split(":")[1] not in bridge.log.read_text()  # the key secret is never logged


def crash_test(
    emulator: Emulator,
    key: str,
    prefix: str,
    client: redis.Redis,
    tmp_path: Path,
    *,
    channels: int,
    messages: int,
    kills: int,
) -> None:
    names = [f"crash-{i}" for i in range(channels)]
    config = write_config(tmp_path / "crash.yaml", emulator, prefix, names)
    rest = rest_for(emulator, key)
    rng = random.Random(7)
    sent: dict[str, list[str]] = {n: [] for n in names}
    done = threading.Event()
    kills_done = threading.Event()

    per_batch = 10
    pause = kills * 1.2 / (messages / per_batch)  # spread the publishing over the kills

    def publisher() -> None:
        # At least ``messages``, and on until the last kill: however slowly the bridge
        # restarts on a loaded machine, every kill lands while messages flow.
        i = 0
        while i < messages or not kills_done.is_set():
            channel = names[(i // per_batch) % channels]
            batch = [Message("e", {"n": i + j}, id=f"m-{i + j}") for j in range(per_batch)]
            rest.channels.get(channel).publish(messages=batch)
            sent[channel].extend(m.id for m in batch if m.id)
            i += per_batch
            time.sleep(pause)
        done.set()

    bridge = Bridge(config, key, tmp_path)
    bridge.wait_ready()
    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    kills_while_publishing = 0
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.6))
            bridge.kill()
            kills_while_publishing += not done.is_set()
            bridge = Bridge(config, key, tmp_path)
            bridge.wait_ready()
        kills_done.set()
        thread.join(timeout=120)
        assert done.is_set()
        assert kills_while_publishing == kills
        for name in names:
            stream = f"{prefix}:s:{name}"
            eventually(
                lambda s=stream, n=name: len(ids_in(client, s)) >= len(sent[n]),
                timeout=60,
                what=f"all messages of {name}",
            )
            assert ids_in(client, stream) == sent[name], name  # once each, in order
        bridge.signal(signal.SIGTERM)
        assert bridge.wait() == 0
    finally:
        kills_done.set()
        bridge.kill()
        rest.close()


@pytest.mark.skipif(not redis_available(), reason="Redis is not running")
def test_sigkill_while_publishing_loses_and_duplicates_nothing(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, tmp_path: Path
) -> None:
    crash_test(emulator, key, prefix, rclient, tmp_path, channels=20, messages=2000, kills=5)


@pytest.mark.slow
@pytest.mark.skipif(not redis_available(), reason="Redis is not running")
def test_sigkill_full_size(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, tmp_path: Path
) -> None:
    crash_test(emulator, key, prefix, rclient, tmp_path, channels=20, messages=10_000, kills=5)
