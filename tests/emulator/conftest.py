"""Fixtures for the emulator tests: a shared emulator, per-test apps, a realtime test client."""

from __future__ import annotations

import base64
import contextlib
import json
import select
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import msgpack
import pytest
import requests
import websocket

from ably_bridge.clock import FakeClock
from ably_bridge.emulator import Emulator, EmulatorConfig
from tests.conftest import ABLY_COMMON

TESTDATA = ABLY_COMMON
FORMATS = ["json", "msgpack"]


def app_setup() -> dict[str, Any]:
    return json.loads((TESTDATA / "test-app-setup.json").read_text())


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(presence_leave_delay_ms=200, heartbeat_interval_ms=200)
    with Emulator(config=config) as emu:
        yield emu


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    """A fresh app per test (test-app-setup.json), deleted afterwards."""
    created = emulator.create_app(app_setup()["post_apps"])
    yield created
    emulator.delete_app(created["appId"])


@pytest.fixture
def root_key(app: dict[str, Any]) -> str:
    return str(app["keys"][0]["keyStr"])


@pytest.fixture(scope="module")
def fake_emulator() -> Iterator[tuple[Emulator, FakeClock]]:
    clock = FakeClock(start=1_700_000_000.0)
    config = EmulatorConfig(presence_leave_delay_ms=15_000, connection_state_ttl_ms=120_000)
    with Emulator(config=config, clock=clock) as emu:
        yield emu, clock


def basic(key: str) -> tuple[str, str]:
    name, _, secret = key.partition(":")
    return name, secret


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RT:
    """A bare realtime protocol client over websocket-client, in JSON or msgpack."""

    def __init__(self, emu: Emulator, fmt: str, **params: Any) -> None:
        self.fmt = fmt
        query = {"format": fmt, "v": "6", **{k: str(v) for k, v in params.items()}}
        self.ws = websocket.create_connection(f"{emu.ws_url}/?{urlencode(query)}", timeout=5)
        self.backlog: list[dict[str, Any]] = []
        self.msg_serial = 0

    def send(self, pm: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.ws.send(json.dumps(pm))
        else:
            self.ws.send_binary(msgpack.packb(pm, use_bin_type=True))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        self.ws.settimeout(timeout)
        raw = self.ws.recv()
        if isinstance(raw, bytes):
            assert self.fmt == "msgpack", "binary frame on a JSON connection"
            pm: dict[str, Any] = msgpack.unpackb(raw, raw=False)
        else:
            assert self.fmt == "json", "text frame on a msgpack connection"
            pm = json.loads(raw)
        return pm

    def expect(self, action: int, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next frame with ``action`` (and matching fields); others are kept for later."""
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no action {action} {match}; saw {skipped}")
                pm = self._next(remaining)
                if pm.get("action") == action and all(pm.get(k) == v for k, v in match.items()):
                    return pm
                if pm.get("action") != 0:
                    skipped.append(pm)
        finally:
            self.backlog[:0] = skipped

    def _next(self, timeout: float) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        self.ws.settimeout(timeout)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException as exc:
            raise AssertionError("timed out waiting for a frame") from exc
        if isinstance(raw, bytes):
            return dict(msgpack.unpackb(raw, raw=False))
        return dict(json.loads(raw))

    def readable(self) -> bool:
        """Whether a frame (or part of one) has arrived and not been read; never waits."""
        return bool(self.backlog) or bool(select.select([self.ws.sock], [], [], 0)[0])

    def connected(self) -> dict[str, Any]:
        return self.expect(4)

    def attach(self, channel: str, **extra: Any) -> dict[str, Any]:
        self.send({"action": 10, "channel": channel, **extra})
        return self.expect(11, channel=channel)

    def publish(self, channel: str, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        serial = self.msg_serial
        self.msg_serial += 1
        self.send({"action": 15, "channel": channel, "msgSerial": serial, "messages": messages})
        return self.expect_any((1, 2), msgSerial=serial)

    def presence(self, channel: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        serial = self.msg_serial
        self.msg_serial += 1
        self.send({"action": 14, "channel": channel, "msgSerial": serial, "presence": items})
        return self.expect_any((1, 2), msgSerial=serial)

    def expect_any(self, actions: tuple[int, ...], **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        skipped: list[dict[str, Any]] = []
        try:
            while time.monotonic() < deadline:
                pm = self._next(deadline - time.monotonic())
                if pm.get("action") in actions and all(pm.get(k) == v for k, v in match.items()):
                    return pm
                if pm.get("action") != 0:
                    skipped.append(pm)
            raise AssertionError(f"no action in {actions}; saw {skipped}")
        finally:
            self.backlog[:0] = skipped

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(deadline - time.monotonic())
            try:
                opcode, _ = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                return True
            except websocket.WebSocketTimeoutException:
                return False
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return True
        return False

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rt_factory(emulator: Emulator) -> Iterator[Callable[..., RT]]:
    clients: list[RT] = []

    def make(fmt: str, **params: Any) -> RT:
        client = RT(emulator, fmt, **params)
        clients.append(client)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


def rest_get(emu: Emulator, path: str, key: str, **kw: Any) -> requests.Response:
    return requests.get(emu.url + path, auth=basic(key), timeout=5, **kw)


def rest_post(emu: Emulator, path: str, key: str, body: Any, **kw: Any) -> requests.Response:
    return requests.post(emu.url + path, auth=basic(key), json=body, timeout=5, **kw)


def rest_call(
    emu: Emulator, key: str, method: str, path: str, body: Any, fmt: str
) -> tuple[int, Any, Any]:
    """A REST request with ``body`` in ``fmt`` (JSON or msgpack), the reply asked for in
    the same: (status, decoded body, headers)."""
    ctype = "application/x-msgpack" if fmt == "msgpack" else "application/json"
    data = msgpack.packb(body) if fmt == "msgpack" else json.dumps(body)
    r = requests.request(
        method,
        emu.url + path,
        data=data if body is not None else None,
        headers={"Content-Type": ctype, "Accept": ctype},
        auth=basic(key),
        timeout=5,
    )
    decoded = msgpack.unpackb(r.content) if fmt == "msgpack" else r.json()
    return r.status_code, decoded, r.headers
