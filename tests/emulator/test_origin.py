"""Browser pages and the emulator: Host, Origin and Sec-Fetch-Site checks (issue 17.8)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import websocket

from ably_bridge.emulator import Emulator, EmulatorConfig
from ably_bridge.emulator.origin import host_allowed, is_loopback, origin_allowed


def _ws(emu: Emulator, **headers: str) -> websocket.WebSocket:
    """A WebSocket with exactly the Origin (none unless given) and Host headers asked for."""
    options: dict[str, object] = {"timeout": 5}
    if "Origin" in headers:
        options["origin"] = headers["Origin"]
    else:
        options["suppress_origin"] = True
    if "Host" in headers:
        options["host"] = headers["Host"]
    return websocket.create_connection(
        f"{emu.ws_url}/?format=json&v=6&key={emu.root_key}", **options
    )


def _refused(emu: Emulator, **headers: str) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(emu, **headers)
    return int(info.value.status_code)


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "http://localhost:3000",
        "http://127.0.0.1:5173",
        "https://app.localhost",
        "http://[::1]:8000",
    ],
)
def test_websocket_from_node_and_local_pages(emulator: Emulator, origin: str | None) -> None:
    ws = _ws(emulator, **({"Origin": origin} if origin else {}))
    assert json.loads(ws.recv())["action"] == 4
    ws.close()


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://localhost.evil.example", "file://", "ws://x"]
)
def test_websocket_from_other_sites_refused(emulator: Emulator, origin: str) -> None:
    assert _refused(emulator, Origin=origin) == 403


def test_websocket_page_on_the_host_it_addresses(emulator: Emulator) -> None:
    # A page served from the machine's own address (emulator bound beyond loopback).
    ws = _ws(emulator, Host="192.0.2.7:8080", Origin="http://192.0.2.7:3000")
    assert json.loads(ws.recv())["action"] == 4
    ws.close()


def test_dns_rebinding_refused(emulator: Emulator) -> None:
    assert _refused(emulator, Host="rebind.evil.example") == 403
    r = requests.get(
        emulator.url + "/_emulator/connections", headers={"Host": "rebind.evil.example"}, timeout=5
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == 40300


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:3000"},
    ],
)
def test_admin_api_refuses_cross_site(emulator: Emulator, headers: dict[str, str]) -> None:
    before = emulator.faults.describe()
    for method, path in (
        ("POST", "/_emulator/faults/fail_rest"),
        ("GET", "/_emulator/connections"),
        ("GET", "/_emulator/health"),
    ):
        r = requests.request(method, emulator.url + path, headers=headers, data="{}", timeout=5)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == 40300
    assert emulator.faults.describe() == before  # nothing was scheduled


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_admin_api_from_loopback_and_tools(emulator: Emulator, headers: dict[str, str]) -> None:
    r = requests.get(emulator.url + "/_emulator/health", headers=headers, timeout=5)
    assert r.status_code == 200 and r.json()["ok"] is True


@pytest.fixture(scope="module")
def allowing() -> Iterator[Emulator]:
    config = EmulatorConfig(allowed_origins=("https://app.example.test", "null"))
    with Emulator(config=config) as emu:
        yield emu


def test_allowed_origins(allowing: Emulator) -> None:
    for origin in ("https://app.example.test", "null"):
        ws = _ws(allowing, Origin=origin)
        assert json.loads(ws.recv())["action"] == 4
        ws.close()
    assert _refused(allowing, Origin="https://other.example.test") == 403
    r = requests.get(
        allowing.url + "/_emulator/health",
        headers={"Host": "app.example.test", "Origin": "https://app.example.test"},
        timeout=5,
    )
    assert r.status_code == 200


def test_origin_rules() -> None:
    assert is_loopback("localhost") and is_loopback("127.8.9.1") and is_loopback("::1")
    assert is_loopback("a.localhost") and not is_loopback("localhost.example")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert host_allowed("127.0.0.1:80", "127.0.0.1", ()) and host_allowed(None, "x", ())
    assert host_allowed("[::1]:9", "127.0.0.1", ()) and host_allowed("10.1.2.3", "127.0.0.1", ())
    assert host_allowed("devbox:8080", "devbox", ())
    assert not host_allowed("evil.example:80", "127.0.0.1", ())
    assert origin_allowed(None, None, ()) and not origin_allowed("null", None, ())
    assert not origin_allowed("http://", "x", ()) and not origin_allowed("%%%", "x", ())
    assert origin_allowed("http://devbox:3000", "devbox:8080", ())
