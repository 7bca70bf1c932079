"""The tools as real processes: exit codes, stdout/stderr separation, SIGTERM on a tail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ably_bridge.emulator import Emulator


def tool_env(emulator: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLY_")}
    env.update(
        ABLY_KEY=emulator.root_key,
        ABLY_ENDPOINT="127.0.0.1",
        ABLY_PORT=str(emulator.port),
        ABLY_TLS="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def tool(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ably_bridge.commands", *argv]


def test_subscribe_and_publish_as_processes(emulator: Emulator) -> None:
    env = tool_env(emulator)
    tail = subprocess.Popen(
        tool("subscribe", "proc:chat", "--count", "1", "--timeout", "20", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        line = tail.stderr.readline()  # "…: attached to proc:chat", once it can receive
        assert "attached to proc:chat" in line
        published = subprocess.run(
            tool("publish", "proc:chat", "greet", '{"hi": 1}', "--json-data", "--json"),
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        out, err = tail.communicate(timeout=20)
    finally:
        tail.kill() if tail.poll() is None else None
    assert tail.returncode == 0, err
    event = json.loads(out)
    assert event["data"] == {"hi": 1} and event["id"] == json.loads(published.stdout)["id"]
    assert emulator.root_key.split(":")[1] not in out + err + published.stdout


def test_sigterm_stops_a_tail_with_exit_0(emulator: Emulator) -> None:
    tail = subprocess.Popen(
        tool("subscribe", "proc:quiet"),
        env=tool_env(emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert "attached" in tail.stderr.readline()
        tail.send_signal(signal.SIGTERM)
        tail.communicate(timeout=15)
    finally:
        tail.kill() if tail.poll() is None else None
    assert tail.returncode == 0


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["stats", "--unit", "week"], 2), (["presence", "x", "--port", "9"], 1)],
)
def test_exit_codes_of_processes(emulator: Emulator, argv: list[str], code: int) -> None:
    started = time.monotonic()
    done = subprocess.run(
        tool(*argv), env=tool_env(emulator), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    assert time.monotonic() - started < 60
