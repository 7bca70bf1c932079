"""Fault injection over HTTP refuses bad arguments and leaves later calls working (issue 17.9)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import requests

from ably_bridge.emulator import Emulator

from .conftest import rest_get, rest_post

BAD: list[tuple[str, Any]] = [
    ("fail_rest", {"status": "abc"}),
    ("fail_rest", {"status": 200}),
    ("fail_rest", {"status": 99999}),
    ("fail_rest", {"status": True}),
    ("fail_rest", {"code": 12}),
    ("fail_rest", {"code": "50000"}),
    ("fail_rest", {"count": -1}),
    ("fail_rest", {"count": 0}),
    ("fail_rest", {"count": 1.5}),
    ("fail_rest", {"count": 2**40}),
    ("fail_rest", {"message": 5}),
    ("fail_rest", {"message": "x" * 5000}),
    ("fail_rest", {"path_prefix": ["/"]}),
    ("fail_rest", {"app_id": {"a": 1}}),
    ("fail_rest", {"bogus": 1}),
    ("refuse_connections", {"code": -5}),
    ("refuse_connections", {"status": "x"}),
    ("disconnect", {"action": "explode"}),
    ("disconnect", {"code": None}),
    ("delay_frames", {}),
    ("delay_frames", {"seconds": -1}),
    ("delay_frames", {"seconds": 1e300}),
    ("delay_frames", {"seconds": "soon"}),
    ("stall", {"stalled": "yes"}),
    ("channel_fault", {"channel": "x"}),
    ("channel_fault", {"app_id": "a", "channel": "x", "status": 700}),
    ("stop_heartbeats", {"stopped": 1}),
    ("expire_tokens", {"app_id": 5}),
    ("clear", {"now": True}),
]


@pytest.mark.parametrize(("name", "args"), BAD)
def test_bad_fault_arguments_refused(
    emulator: Emulator, root_key: str, name: str, args: Any
) -> None:
    before = emulator.faults.describe()
    r = requests.post(f"{emulator.url}/_emulator/faults/{name}", json=args, timeout=5)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 40003
    assert emulator.faults.describe() == before
    assert requests.get(emulator.url + "/time", timeout=5).status_code == 200
    assert rest_post(emulator, "/channels/f/messages", root_key, {"data": 1}).status_code == 201
    assert rest_get(emulator, "/channels/f/messages", root_key).status_code == 200


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"[1, 2]", "application/json"),
        (b'"x"', "application/json"),
        (b"{nope", "application/json"),
        (b'{"count": NaN}', "application/json"),
        (msgpack.packb({"count": msgpack.ExtType(3, b"x")}), "application/x-msgpack"),
        (msgpack.packb({1: 2}), "application/x-msgpack"),
    ],
)
def test_bad_fault_bodies_refused(emulator: Emulator, body: bytes, ctype: str) -> None:
    r = requests.post(
        f"{emulator.url}/_emulator/faults/fail_rest",
        data=body,
        headers={"Content-Type": ctype},
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == 40001
    assert emulator.faults.describe()["restFailures"] == []
    assert requests.get(emulator.url + "/time", timeout=5).status_code == 200


def test_good_fault_arguments_still_work(emulator: Emulator, app: dict[str, Any]) -> None:
    args = {"count": 1, "status": 503, "code": 50300, "app_id": app["appId"], "message": "m"}
    r = requests.post(f"{emulator.url}/_emulator/faults/fail_rest", json=args, timeout=5)
    assert r.status_code == 200
    key = app["keys"][0]["keyStr"]
    failed = rest_get(emulator, "/channels/g/messages", key)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == 50300
    assert rest_get(emulator, "/channels/g/messages", key).status_code == 200
    delay = {"seconds": 0, "app_id": app["appId"]}
    r = requests.post(f"{emulator.url}/_emulator/faults/delay_frames", json=delay, timeout=5)
    assert r.status_code == 200 and r.json() == {"affected": 0}
