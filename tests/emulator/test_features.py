"""Channel features: unenveloped REST publish, ``[meta]channel.lifecycle``, inband
occupancy (``occupancy=metrics``) and a configurable presence SYNC page size
and page interval."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import requests

from ably_bridge.emulator import Emulator, EmulatorConfig

from .conftest import RT, basic, rest_get

ACK, MESSAGE, PRESENCE, SYNC, HEARTBEAT = 1, 15, 14, 16, 0


def _history(emulator: Emulator, key: str, channel: str) -> list[dict[str, Any]]:
    r = rest_get(emulator, f"/channels/{channel}/messages?direction=forwards", key)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()
    return items


def test_unenveloped_publish(emulator: Emulator, root_key: str) -> None:
    url = f"{emulator.url}/channels/raw/messages?enveloped=false"
    auth = basic(root_key)

    def post(body: bytes, ctype: str, query: str = "", **headers: str) -> None:
        all_headers = {"Content-Type": ctype, **headers}
        r = requests.post(url + query, data=body, headers=all_headers, auth=auth, timeout=5)
        assert r.status_code == 201, r.text

    post("héllo".encode(), "text/plain; charset=utf-8", **{"X-Ably-Name": "text"})
    post(b"\x00\xff", "application/octet-stream", "&name=bin&messageId=fixed-id")
    post(b'{"a":1}', "application/json", **{"X-Ably-Name": "obj"})
    post(b"aGk=", "application/octet-stream", **{"X-Ably-Encoding": "base64", "X-Ably-Name": "b64"})
    post(b"x", "text/plain", "&name=who&clientId=robot")
    got = _history(emulator, root_key, "raw")
    by_name = {m["name"]: m for m in got}
    assert by_name["text"]["data"] == "héllo" and "encoding" not in by_name["text"]
    assert (by_name["bin"]["data"], by_name["bin"]["encoding"]) == ("AP8=", "base64")
    assert by_name["bin"]["id"] == "fixed-id"
    assert (json.loads(by_name["obj"]["data"]), by_name["obj"]["encoding"]) == ({"a": 1}, "json")
    assert base64.b64decode(by_name["b64"]["data"]) == b"hi"
    assert by_name["who"]["clientId"] == "robot"


def test_channel_lifecycle_metachannel(
    app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    meta_key = app["keys"][5]["keyStr"]  # [*]* reaches [meta] channels
    watcher = rt_factory(fmt, key=meta_key)
    watcher.connected()
    watcher.attach("[meta]channel.lifecycle")
    client = rt_factory(fmt, key=app["keys"][0]["keyStr"])
    client.connected()
    client.attach("lc")
    opened = watcher.expect(MESSAGE, channel="[meta]channel.lifecycle")["messages"][0]
    assert (opened["name"], opened["encoding"]) == ("channel.opened", "json")
    details = json.loads(opened["data"])
    assert details["channelId"] == "lc" and details["status"]["isActive"]
    assert details["status"]["occupancy"]["metrics"]["connections"] == 1
    client.send({"action": 12, "channel": "lc"})
    closed = watcher.expect(MESSAGE, channel="[meta]channel.lifecycle")["messages"][0]
    assert closed["name"] == "channel.closed"
    assert json.loads(closed["data"])["status"]["isActive"] is False
    plain = rt_factory(fmt, key=app["keys"][0]["keyStr"])  # '*' does not cover [meta]
    plain.connected()
    plain.send({"action": 10, "channel": "[meta]channel.lifecycle"})
    assert plain.expect(9, channel="[meta]channel.lifecycle")["error"]["code"] == 40160


def test_inband_occupancy(app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str) -> None:
    key = app["keys"][0]["keyStr"]
    watcher = rt_factory(fmt, key=key)
    watcher.connected()
    attached = watcher.attach("occ", params={"occupancy": "metrics"})
    assert attached["params"] == {"occupancy": "metrics"}

    def metrics() -> dict[str, int]:
        message = watcher.expect(MESSAGE, channel="occ")["messages"][0]
        assert (message["name"], message["encoding"]) == ("[meta]occupancy", "json")
        found: dict[str, int] = json.loads(message["data"])["metrics"]
        return found

    assert metrics()["connections"] == 1
    member = rt_factory(fmt, key=key, clientId="m")
    member.connected()
    member.attach("occ")
    assert metrics()["connections"] == 2
    assert member.presence("occ", [{"action": 2}])["action"] == ACK
    assert metrics()["presenceMembers"] == 1

    no_metadata = rt_factory(fmt, key=app["keys"][3]["keyStr"])  # subscribe only
    no_metadata.connected()
    assert no_metadata.attach("occ", params={"occupancy": "metrics"})["params"] == {}
    member.publish("occ", [{"name": "plain"}])
    assert no_metadata.expect(MESSAGE)["messages"][0]["name"] == "plain"


def test_sync_page_size_is_configurable() -> None:
    with Emulator(config=EmulatorConfig(sync_page_size=3)) as emu:
        bulk = RT(emu, "json", key=emu.root_key)
        bulk.connected()
        bulk.presence("crowd", [{"action": 2, "clientId": f"c{i}"} for i in range(7)])
        watcher = RT(emu, "msgpack", key=emu.root_key)
        watcher.connected()
        watcher.attach("crowd")
        pages = [watcher.expect(SYNC, channel="crowd") for _ in range(3)]
        assert [len(p["presence"]) for p in pages] == [3, 3, 1]
        assert pages[-1]["channelSerial"].endswith(":")
        for rt in (bulk, watcher):
            rt.close()


def test_sync_pages_can_be_spaced_so_live_presence_goes_out_between_them() -> None:
    config = EmulatorConfig(sync_page_size=2, sync_page_interval_ms=1000)
    with Emulator(config=config) as emu:
        bulk = RT(emu, "json", key=emu.root_key)
        bulk.connected()
        bulk.presence("crowd", [{"action": 2, "clientId": f"c{i}"} for i in range(4)])
        watcher = RT(emu, "msgpack", key=emu.root_key)
        watcher.connected()
        watcher.attach("crowd")
        first = watcher.expect(SYNC, channel="crowd")
        assert len(first["presence"]) == 2 and not first["channelSerial"].endswith(":")
        bulk.presence("crowd", [{"action": 3, "clientId": "c3"}])
        leave = watcher.expect_any((PRESENCE, SYNC), channel="crowd")  # before the last page
        assert leave["action"] == PRESENCE
        assert [(m["action"], m["clientId"]) for m in leave["presence"]] == [(3, "c3")]
        last = watcher.expect(SYNC, channel="crowd")
        assert last["channelSerial"].endswith(":")
        assert [m["clientId"] for m in last["presence"]] == ["c2", "c3"]  # snapshot at attach
        for rt in (bulk, watcher):
            rt.close()
