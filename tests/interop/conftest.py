"""Fixtures for the interop tests: the emulator, a fresh app per test, the official SDKs.

The official Python SDK (``ably`` from PyPI) is configured as INTEROP-NOTES
describes: REST on ``rest_host``/``port`` with token auth (it refuses Basic
auth over plain HTTP), realtime on ``realtime_host="127.0.0.1:PORT"`` (its
WebSocket URL ignores ``port``). ably-js runs as node scripts from
``tests/interop/js`` (installed by ``scripts/install-interop.sh``); when node
or the pinned package is missing the tests fail with a message saying so.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ably_bridge.emulator import Emulator, EmulatorConfig

JS_DIR = Path(__file__).parent / "js"
INSTALL_HINT = "run scripts/install-interop.sh (needs node and npm)"
FORMATS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator(config=EmulatorConfig(presence_leave_delay_ms=500)) as emu:
        yield emu


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    """A fresh app per test: a full-rights key and a publish/subscribe/presence-only key."""
    created = emulator.create_app(
        {"keys": [{}, {"capability": '{"*":["publish","subscribe","presence"]}'}]}
    )
    yield created
    emulator.delete_app(created["appId"])


@pytest.fixture
def key(app: dict[str, Any]) -> str:
    return str(app["keys"][0]["keyStr"])


@pytest.fixture
def channel_name() -> str:
    return f"interop-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=FORMATS)
def binary(request: pytest.FixtureRequest) -> bool:
    """True: msgpack (useBinaryProtocol), False: JSON."""
    return bool(request.param)


# -- ably-js -------------------------------------------------------------------
@pytest.fixture(scope="session")
def node() -> str:
    """Path of node with the pinned ably-js beside the scripts; fails (not skips) otherwise."""
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"node is not installed: {INSTALL_HINT}", pytrace=False)
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]["ably"]
    installed = JS_DIR / "node_modules" / "ably" / "package.json"
    if not installed.exists():
        pytest.fail(f"ably-js is not installed in {JS_DIR}: {INSTALL_HINT}", pytrace=False)
    version = json.loads(installed.read_text())["version"]
    if version != wanted:
        pytest.fail(f"ably-js {version} installed, {wanted} pinned: {INSTALL_HINT}", pytrace=False)
    return found


def js_config(emulator: Emulator, key: str, binary: bool, **extra: Any) -> str:
    return json.dumps(
        {"endpoint": emulator.host, "port": emulator.port, "key": key, "binary": binary, **extra}
    )


def run_js(node: str, script: str, config: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run ``js/<script>`` to completion and return the JSON object it printed last."""
    proc = subprocess.run(
        [node, str(JS_DIR / script), config],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=JS_DIR,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result:
        raise AssertionError(
            f"{script} failed (exit {proc.returncode}): {result.get('error')}\n"
            f"stderr:\n{proc.stderr[-3000:]}"
        )
    return result


class JsPeer:
    """``js/peer.js`` (or another ``script`` speaking its protocol): JSON commands, one per line."""

    def __init__(self, node: str, config: str, script: str = "peer.js") -> None:
        self.script = script
        self.proc = subprocess.Popen(
            [node, str(JS_DIR / script), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=JS_DIR,
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._next_id = 0
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def call(self, op: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Send one command and wait (with a deadline) for its reply; raise on an error reply."""
        self._next_id += 1
        command_id = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": command_id, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.script}: no reply to {op}; stderr: {self._tail()}")
            try:
                line = self.replies.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.script} exited during {op}; stderr: {self._tail()}")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") != command_id:
                continue
            if "error" in reply:
                raise AssertionError(f"{self.script} {op} failed: {reply}; stderr: {self._tail()}")
            return reply

    def _tail(self) -> str:
        return "".join(self.stderr[-20:])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                self.call("close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def js_peer(node: str, emulator: Emulator) -> Iterator[Any]:
    """Factory of :class:`JsPeer` processes, all closed at teardown."""
    peers: list[JsPeer] = []

    def make(key: str, binary: bool, script: str = "peer.js", **extra: Any) -> JsPeer:
        peer = JsPeer(node, js_config(emulator, key, binary, **extra), script)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()
