"""Helpers of the dev stack tests: run ``ably-bridge dev`` as a process and read its JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.devstack.layout import DevLayout
from tests.cluster_support import LocalCluster
from tests.support.services import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"

# Variables a developer's shell may have that would point the stack elsewhere.
_FOREIGN = ("ABLY_", "CELERY_", "REDIS_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` as on a fresh machine: no Ably, Celery or Redis settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class DevRun:
    """What a finished ``ably-bridge dev --json`` printed."""

    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def started(self) -> dict[str, Any]:
        found = self.of("started")
        assert found, f"no 'started' line:\n{self.stdout}\n{self.stderr}"
        return found[0]

    @property
    def final(self) -> dict[str, Any]:
        found = [e for e in self.of("summary") if e.get("final")]
        assert found, f"no final summary:\n{self.stdout}\n{self.stderr}"
        return found[-1]


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among ``text``'s lines (make and pip print other lines too)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def run_process(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, timeout: float
) -> DevRun:
    """Run ``argv`` to its end (killing its process group after ``timeout``)."""
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{argv} did not finish within {timeout}s:\n{stdout}\n{stderr}")
    return DevRun(proc.returncode, json_lines(stdout), stdout, stderr)


def processes_mentioning(*needles: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains one of ``needles`` (Linux /proc)."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(n in cmdline for n in needles):
            found.append((int(entry.name), cmdline))
    return found


def assert_no_children_left(started: Mapping[str, Any]) -> None:
    """Every child of the run is gone: its pids, and anything naming its run id or log dir."""
    deadline = time.monotonic() + 5
    while True:
        alive = [pid for pid in started["pids"].values() if _alive(pid)]
        strays = processes_mentioning(started["log_dir"], f"ably-dev-{started['run_id']}@")
        if not alive and not strays:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"children left behind: pids {alive}, processes {strays}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def assert_flowed(run: DevRun) -> None:
    """The final summary shows published messages in the stream and handled by the task."""
    final = run.final
    assert final["published"] >= 3, final
    assert final["presence_entered"] is True, final
    assert final["stream_length"] >= final["published"] + 1, final  # + the presence enter
    assert final["published_in_stream"] == final["published"], final
    assert final["celery_tasks"] >= final["published"] + 1, final
    assert final["celery_by_source"].get("message", 0) >= final["published"], final
    assert final["published_in_tasks"] == final["published"], final
    assert final["bridge_received"] >= final["published"] + 1, final


def cluster_keys(cluster: LocalCluster) -> set[bytes]:
    """Every key on the cluster's primaries now."""
    keys: set[bytes] = set()
    for port in cluster.primary_ports():
        node = cluster.node(port)
        keys.update(node.scan_iter(count=1000))
        node.close()
    return keys


@pytest.fixture
def redis_server_bin() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on the PATH")
    return exe


@pytest.fixture
def own_redis(redis_server_bin: str, tmp_path: Path) -> Iterator[str]:
    """A private redis-server (the test's, standing in for a user's Redis); its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def run_layout() -> Iterator[DevLayout]:
    """A dev-stack layout with a prefix of its own on the shared Redis; its keys go after."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis at 127.0.0.1:6379 is not running")
    layout = DevLayout.for_shared_redis(SHARED_REDIS, uuid.uuid4().hex[:8])
    yield layout
    keys = list(client.scan_iter(match=f"{layout.prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
