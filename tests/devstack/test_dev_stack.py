"""``ably-bridge dev`` end to end, as a process: messages reach the stream and the Celery task.

Each test runs the real command (emulator, redis-server, bridge, Celery worker,
publisher) with ``--json`` and judges it by its JSON lines, its exit status,
and that no process of the run is left behind.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.bridge.redis_connect import open_redis
from tests.cluster_support import LocalCluster

from .conftest import (
    assert_flowed,
    assert_no_children_left,
    clean_env,
    cluster_keys,
    json_lines,
    run_process,
)

ROOT = Path(__file__).resolve().parents[2]
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
def test_dev_stack_on_a_redis_cluster_streams_to_it_and_leaves_its_data_alone(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """--redis-url redis+cluster://: the stream, checkpoints and worker marks go to the
    cluster (and are removed on exit), the Celery broker is a redis-server of the run."""
    user = open_redis(redis_cluster.url)
    user.set("user:key", "mine")
    user.xadd("ably:chat", {"mine": "1"})
    before = cluster_keys(redis_cluster)
    argv = [*DEV, "--port", "0", "--duration", "6", "--json", "--summary-interval", "1"]
    argv += ["--log-dir", str(tmp_path / "logs"), "--redis-url", redis_cluster.url]
    run = run_process(argv, env=clean_env(), timeout=90)
    assert run.returncode == 0, run.stderr
    start = run.started
    assert start["redis"] == redis_cluster.url
    assert start["redis_started"] is False and start["broker_started"] is True
    assert set(start["pids"]) == {"redis", "bridge", "worker"}  # redis: the broker
    assert start["stream"] == f"ably-dev:{start['run_id']}:chat"
    assert start["broker"].startswith("redis://127.0.0.1:")
    assert_flowed(run)  # read back from the stream and the task's marks on the cluster
    assert_no_children_left(start)
    bridge_log = (tmp_path / "logs" / "bridge.log").read_text()
    assert "redis+cluster://" in (tmp_path / "logs" / "bridge.yaml").read_text()
    assert "Traceback" not in bridge_log, bridge_log[-3000:]
    assert cluster_keys(redis_cluster) == before  # the run's keys are gone, the user's stay
    assert user.get("user:key") == b"mine" and user.xlen("ably:chat") == 1
    user.delete("user:key", "ably:chat")
    user.close()


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


def _spawn_dev(tmp_path: Path) -> subprocess.Popen[str]:
    """``ably-bridge dev --json`` in a session of its own, its output piped."""
    argv = [*DEV, "--port", "0", "--json", "--summary-interval", "1"]
    argv += ["--log-dir", str(tmp_path / "logs")]
    return subprocess.Popen(
        argv, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.usefixtures("redis_server_bin")
def test_sigterm_stops_the_stack_with_status_0(tmp_path: Path) -> None:
    proc = _spawn_dev(tmp_path)
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


@pytest.mark.usefixtures("redis_server_bin")
def test_a_sigkilled_dev_stack_leaves_no_children(tmp_path: Path) -> None:
    """SIGKILL reaches no handler of ``ably-bridge dev``; its reaper stops the children."""
    proc = _spawn_dev(tmp_path)
    try:
        assert proc.stdout is not None
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(e["event"] == "started" for e in events):
            line = proc.stdout.readline()
            if not line:
                break
            events += json_lines(line)
        start = next(e for e in events if e["event"] == "started")
        assert {"bridge", "worker", "redis"} <= set(start["pids"])
        os.kill(proc.pid, signal.SIGKILL)  # the dev process only, not its session
        proc.wait(timeout=10)
        assert_no_children_left(start)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_events_until(
    master: int, events: list[dict[str, Any]], done: Any, timeout: float
) -> bytes:
    """Read the pty until ``done(events)``; returns the raw bytes read."""
    raw = b""
    deadline = time.monotonic() + timeout
    pending = b""
    while time.monotonic() < deadline and not done(events):
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        raw += chunk
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            events += json_lines(line.decode("utf-8", "replace"))
    return raw


@pytest.mark.slow
@pytest.mark.usefixtures("redis_server_bin")
def test_make_dev_runs_your_handler_which_publishes_back_and_ctrl_c_exits_0(
    tmp_path: Path,
) -> None:
    """The README's newcomer path, in a terminal: make dev with a handler, load the env file,
    publish with the tool, see the event handled and the handler's reply come back, Ctrl-C."""
    handler = tmp_path / "my_handler.py"
    handler.write_text(
        "from workers import producers\n\n"
        "def handle(event):\n"
        "    print(f'{event.client_id} said {event.data} on {event.channel}')\n"
        "    if event.data == 'ping':\n"
        "        producers.publish(event.channel, 'pong', 'pong')\n"
        "    return len(event.data)\n"
    )
    env_file = tmp_path / "dev.env"
    dev_args = f"--port 0 --json --no-publisher --handler {handler}:handle"
    dev_args += f" --log-dir {tmp_path / 'logs'} --env-file {env_file}"
    argv = ["make", "-s", "-C", str(ROOT), "dev", f"VENV={sys.prefix}", f"DEV_ARGS={dev_args}"]
    pid, master = pty.fork()
    if pid == 0:  # the child: make in the pty's foreground, as in a terminal
        os.execvpe("make", argv, clean_env())
    events: list[dict[str, Any]] = []
    raw = b""

    def yours(stage: str, name: str) -> Any:
        return lambda ev: any(
            e["event"] == "yours" and e["stage"] == stage and e["name"] == name for e in ev
        )

    try:
        raw += _read_events_until(
            master, events, lambda ev: any(e["event"] == "started" for e in ev), 90
        )
        start = next((e for e in events if e["event"] == "started"), None)
        assert start is not None, raw.decode(errors="replace")[-3000:]
        assert start["env_file"] == str(env_file)
        assert env_file.stat().st_mode & 0o777 == 0o600
        tool = Path(sys.prefix) / "bin" / "ably-bridge"
        published = subprocess.run(
            ["bash", "-c", f"set -a; . {env_file}; set +a; "
             f"{tool} publish chat:lobby text ping --client-id newcomer --id newcomer-1"],
            env=clean_env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        raw += _read_events_until(master, events, yours("handled", "text"), 30)
        raw += _read_events_until(master, events, yours("stream", "pong"), 30)
        os.write(master, b"\x03")  # Ctrl-C, sent by the terminal to its foreground group
        raw += _read_events_until(
            master, events, lambda ev: any(e["event"] == "stopped" for e in ev), 60
        )
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    text = raw.decode(errors="replace")
    seen = [(e["stage"], e["name"], e["client_id"]) for e in events if e["event"] == "yours"]
    assert seen[0] == ("stream", "text", "newcomer"), text[-3000:]
    assert ("handled", "text", "newcomer") in seen
    assert ("stream", "pong", None) in seen  # the handler's reply, published through ably.publish
    mine = next(e for e in events if e["event"] == "yours" and e["stage"] == "handled")
    assert mine["id"] == "newcomer-1" and mine["channel"] == "chat:lobby"
    assert mine["result"]["output"] == "newcomer said ping on chat:lobby\n"
    assert mine["result"]["returned"] == "4" and mine["result"]["error"] is None
    assert events[-1]["event"] == "stopped" and events[-1]["exit_code"] == 0, text[-3000:]
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]  # make's status, not 130
    assert not env_file.exists()  # removed on exit
    assert_no_children_left(start)


@pytest.mark.usefixtures("redis_server_bin")
def test_a_reader_that_goes_away_does_not_break_the_shutdown(tmp_path: Path) -> None:
    """``make dev | tee``, then Ctrl-C: tee is gone before the final summary is printed."""
    proc = _spawn_dev(tmp_path)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        start: dict[str, Any] | None = None
        deadline = time.monotonic() + 60
        while start is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            start = next((e for e in json_lines(line) if e["event"] == "started"), None)
        assert start is not None
        proc.stdout.close()  # the reader goes away
        proc.send_signal(signal.SIGINT)
        stderr = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert_no_children_left(start)
