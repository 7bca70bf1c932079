"""``ably-bridge dev`` end to end, as a process: messages reach the stream and the Celery task.

Each test runs the real command (emulator, redis-server, bridge, Celery worker,
publisher) with ``--json`` and judges it by its JSON lines, its exit status,
and that no process of the run is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from .conftest import (
    assert_flowed,
    assert_no_children_left,
    clean_env,
    json_lines,
    run_process,
)

_SCRIPT = Path(sys.executable).parent / "ably-bridge"  # the installed console script
DEV = (
    [str(_SCRIPT), "dev"] if _SCRIPT.exists() else [sys.executable, "-m", "ably_bridge.cli", "dev"]
)


@pytest.mark.usefixtures("redis_server_bin")
def test_dev_stack_runs_for_a_duration_and_stops_cleanly(tmp_path: Path) -> None:
    argv = [*DEV, "--port", "0", "--duration", "12", "--json", "--summary-interval", "1"]
    argv += ["--log-dir", str(tmp_path / "logs")]
    started = time.monotonic()
    run = run_process(argv, env=clean_env(), timeout=90)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    start = run.started
    assert start["redis_started"] is True
    assert start["key"] == "dev.root:dev-secret-not-for-production"
    assert set(start["pids"]) == {"redis", "bridge", "worker"}
    summaries = [e for e in run.of("summary") if not e["final"]]
    assert len(summaries) >= 8  # one a second
    assert any(s["stream_length"] and s["celery_tasks"] for s in summaries)
    assert_flowed(run)
    assert run.of("stopped") == [
        {"event": "stopped", "exit_code": 0, "log_dir": str(tmp_path / "logs")}
    ]
    assert_no_children_left(start)
    logs = tmp_path / "logs"
    assert {"bridge.log", "worker.log", "redis.log", "dev.log", "bridge.yaml"} <= {
        p.name for p in logs.iterdir()
    }
    assert "on chat:lobby from dev-publisher" in (logs / "worker.log").read_text()
    assert elapsed < 60, elapsed  # about 16 s: start, 12 s of running, stop


def test_dev_stack_on_a_users_redis_leaves_its_data_alone(own_redis: str, tmp_path: Path) -> None:
    """REDIS_URL given: the run's keys are prefixed and removed; the user's keys stay."""
    user = redis.Redis.from_url(own_redis)
    broker_db = redis.Redis.from_url(own_redis.rsplit("/", 1)[0] + "/1")
    user.set("user:key", "mine")
    user.xadd("ably:chat", {"mine": "1"})
    broker_db.set("user:broker-key", "mine")
    argv = [*DEV, "--port", "0", "--duration", "6", "--json", "--summary-interval", "1"]
    argv += ["--log-dir", str(tmp_path / "logs")]
    run = run_process(argv, env=clean_env({"REDIS_URL": own_redis}), timeout=90)
    assert run.returncode == 0, run.stderr
    start = run.started
    assert start["redis_started"] is False
    assert start["stream"] == f"ably-dev:{start['run_id']}:chat"
    assert_flowed(run)
    assert_no_children_left(start)
    assert sorted(user.keys("*")) == [b"ably:chat", b"user:key"]
    assert user.get("user:key") == b"mine" and user.xlen("ably:chat") == 1
    assert broker_db.keys("*") == [b"user:broker-key"]
    user.close()
    broker_db.close()


@pytest.mark.usefixtures("redis_server_bin")
def test_a_child_that_dies_ends_the_run_with_status_1_and_its_log(tmp_path: Path) -> None:
    argv = [*DEV, "--port", "0", "--json", "--summary-interval", "1", "--no-publisher"]
    argv += ["--log-dir", str(tmp_path / "logs")]
    proc = subprocess.Popen(
        argv,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        start = None
        deadline = time.monotonic() + 60
        while start is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            for event in json_lines(line):
                if event["event"] == "started":
                    start = event
        assert start is not None, proc.stderr.read() if proc.stderr else ""
        assert start["publisher"] is False
        os.kill(start["pids"]["bridge"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1
    assert f"the bridge (pid {start['pids']['bridge']}) exited with status -9" in stderr
    assert "bridge.log" in stderr and "bridge started" in stderr  # the log's last lines
    events = json_lines(stdout)
    assert events[-1]["event"] == "stopped" and events[-1]["exit_code"] == 1
    assert_no_children_left(start)


@pytest.mark.usefixtures("redis_server_bin")
def test_sigterm_stops_the_stack_with_status_0(tmp_path: Path) -> None:
    argv = [*DEV, "--port", "0", "--json", "--summary-interval", "1"]
    argv += ["--log-dir", str(tmp_path / "logs")]
    proc = subprocess.Popen(
        argv, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            events += json_lines(line)
            summaries = [e for e in events if e["event"] == "summary"]
            if summaries and int(summaries[-1]["celery_tasks"] or 0) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    events += json_lines(stdout)
    start = next(e for e in events if e["event"] == "started")
    final = [e for e in events if e["event"] == "summary" and e["final"]]
    assert final and final[0]["published_in_tasks"] == final[0]["published"]
    assert events[-1] == {"event": "stopped", "exit_code": 0, "log_dir": start["log_dir"]}
    assert_no_children_left(start)
