"""Mutable messages: get by serial, update, delete, append, versions; on REST and realtime."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from ably_bridge.emulator import Emulator

from .conftest import RT, b64, basic, rest_call, rest_post

MSGPACK = "application/x-msgpack"


def _call(emu: Emulator, key: str, method: str, path: str, body: Any, fmt: str) -> Any:
    status, decoded, _ = rest_call(emu, key, method, path, body, fmt)
    return status, decoded


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_rest_update_delete_append_and_versions(
    emulator: Emulator, root_key: str, fmt: str
) -> None:
    ch = f"mutable:rest-{fmt}"
    serial = rest_post(
        emulator, f"/channels/{ch}/messages", root_key, {"name": "n", "data": "Hello"}
    ).json()["serials"][0]
    status, original = _call(
        emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt
    )
    assert status == 200 and original["data"] == "Hello" and original["serial"] == serial
    op = {"clientId": "editor", "description": "typo", "metadata": {"why": "x"}}
    status, result = _call(
        emulator, root_key, "PATCH", f"/channels/{ch}/messages/{serial}",
        {"action": 1, "data": "Hi", "version": op}, fmt,
    )  # fmt: skip
    assert status == 200 and result["versionSerial"] > serial
    _, latest = _call(emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt)
    assert (latest["serial"], latest["action"], latest["data"], latest["name"]) == (
        serial,
        1,
        "Hi",
        "n",
    )
    assert latest["version"]["serial"] == result["versionSerial"]
    assert latest["version"]["clientId"] == "editor" and latest["version"]["metadata"] == {
        "why": "x"
    }
    assert latest["version"]["timestamp"] >= original["timestamp"]
    _call(
        emulator,
        root_key,
        "PATCH",
        f"/channels/{ch}/messages/{serial}",
        {"action": 5, "data": " there"},
        fmt,
    )
    _, latest = _call(emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt)
    assert (latest["action"], latest["data"]) == (1, "Hi there")
    _call(emulator, root_key, "PATCH", f"/channels/{ch}/messages/{serial}", {"action": 2}, fmt)
    _, latest = _call(emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt)
    assert latest["action"] == 2 and "data" not in latest
    _, versions = _call(
        emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}/versions", None, fmt
    )
    assert [v["action"] for v in versions] == [0, 1, 1, 2]
    assert versions[0]["data"] == "Hello" and versions[2]["data"] == "Hi there"
    history = requests.get(
        emulator.url + f"/channels/{ch}/messages", auth=basic(root_key), timeout=5
    ).json()
    assert [m["serial"] for m in history] == [serial] and history[0]["action"] == 2


def test_rest_refusals(emulator: Emulator, app: dict[str, Any]) -> None:
    root = app["keys"][0]["keyStr"]
    serial = rest_post(emulator, "/channels/plain/messages", root, {"data": "x"}).json()["serials"][
        0
    ]
    status, body = _call(
        emulator, root, "PATCH", f"/channels/plain/messages/{serial}", {"data": "y"}, "json"
    )
    assert status == 400 and body["error"]["code"] == 93002  # not a mutable namespace
    status, body = _call(
        emulator, root, "GET", "/channels/mutable:none/messages/0000000000000009", None, "json"
    )
    assert status == 404 and body["error"]["code"] == 40400
    serial = rest_post(emulator, "/channels/mutable:r/messages", root, {"data": "x"}).json()[
        "serials"
    ][0]
    sub_only = app["keys"][3]["keyStr"]
    status, body = _call(
        emulator, sub_only, "PATCH", f"/channels/mutable:r/messages/{serial}", {"data": "y"}, "json"
    )
    assert status == 401 and body["error"]["code"] == 40160
    status, body = _call(
        emulator,
        root,
        "PATCH",
        f"/channels/mutable:r/messages/{serial}",
        {"action": 5, "data": 7},
        "json",
    )
    assert status == 400 and body["error"]["code"] == 40013


def test_own_rights(emulator: Emulator, app: dict[str, Any]) -> None:
    root = app["keys"][0]["keyStr"]
    name = app["keys"][0]["keyName"]
    cap = json.dumps({"mutable:*": ["publish", "history", "message-update-own"]})
    token = rest_post(
        emulator, f"/keys/{name}/requestToken", root, {"capability": cap, "clientId": "me"}
    ).json()
    auth = {"Authorization": "Bearer " + b64(token["token"])}
    mine = requests.post(
        emulator.url + "/channels/mutable:own/messages", json={"data": "a"}, headers=auth, timeout=5
    )
    theirs = rest_post(
        emulator, "/channels/mutable:own/messages", root, {"data": "b", "clientId": "you"}
    )
    for serial, expected in ((mine.json()["serials"][0], 200), (theirs.json()["serials"][0], 401)):
        r = requests.patch(
            emulator.url + f"/channels/mutable:own/messages/{serial}",
            json={"data": "c"},
            headers=auth,
            timeout=5,
        )
        assert r.status_code == expected, r.text


def test_realtime_operations_keep_the_serial(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    ch = f"mutable:rt-{fmt}"
    sub = rt_factory(fmt, key=root_key)
    sub.connected()
    sub.attach(ch)
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    pub.attach(ch)
    serial = pub.publish(ch, [{"name": "orig", "data": "Hello"}])["res"][0]["serials"][0]
    assert sub.expect(15, channel=ch)["messages"][0]["serial"] == serial
    op = {"clientId": "rt-editor", "description": "d", "metadata": {"k": "v"}}
    for action, data, expect_data in ((1, "Hi", "Hi"), (5, " you", " you"), (2, None, None)):
        item: dict[str, Any] = {"action": action, "serial": serial, "version": op}
        if data is not None:
            item["data"] = data
        ack = pub.publish(ch, [item])
        assert ack["action"] == 1, ack
        version_serial = ack["res"][0]["serials"][0]
        got = sub.expect(15, channel=ch)["messages"][0]
        assert (got["serial"], got["action"], got["name"]) == (serial, action, "orig")
        assert (
            got["version"]["serial"] == version_serial and got["version"]["clientId"] == "rt-editor"
        )
        assert got.get("data") == expect_data
    versions = requests.get(
        emulator.url + f"/channels/{ch}/messages/{serial}/versions", auth=basic(root_key), timeout=5
    ).json()
    assert [v["action"] for v in versions] == [0, 1, 1, 2] and versions[2]["data"] == "Hi you"
