"""ably-js 2.28.0 (npm) against the emulator, alone and together with other clients.

``js/basics.js`` exercises ably-js by itself (Rest + Realtime with a key,
publish/subscribe, presence, paginated and untilAttach history, tokens from
createTokenRequest through authCallback). The cross-SDK tests drive
``js/peer.js`` line by line while the official Python SDK or a raw WebSocket
sits on the other end: messages both ways with string, JSON and binary
payloads (the emulator transcodes between JSON and msgpack), presence seen
from both sides, history written by one SDK and paged by the other.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import msgpack
import pytest
import websocket

from ably_bridge.emulator import Emulator

from .conftest import js_config, run_js
from .sdk import PAYLOADS, TIMEOUT, PyRealtime, describe, make, rest_sync

# (ably-js useBinaryProtocol, Python SDK use_binary_protocol): the mixed pairs
# make the emulator transcode, the matching pairs pass bytes straight through.
PAIRS = [
    pytest.param(True, False, id="js-msgpack/py-json"),
    pytest.param(False, True, id="js-json/py-msgpack"),
    pytest.param(True, True, id="msgpack"),
    pytest.param(False, False, id="json"),
]


def test_ably_js_on_its_own(
    node: str, emulator: Emulator, key: str, binary: bool, channel_name: str
) -> None:
    out = run_js(node, "basics.js", js_config(emulator, key, binary, channel=channel_name))
    assert abs(out["time"] - emulator.state.now_ms()) < 60_000
    received = out["received"]
    assert [m["name"] for m in received] == ["text", "json", "binary"]
    assert [m["data"] for m in received] == [
        {"type": "string", "value": "hello"},
        {"type": "json", "value": {"a": [1, 2], "b": "c"}},
        {"type": "binary", "value": "0001feff"},
    ]
    conn_id = out["connectionId"]
    assert [m["id"] for m in received] == [f"{conn_id}:{i}:0" for i in range(3)]
    assert {(m["clientId"], m["connectionId"], m["encoding"]) for m in received} == {
        ("js-key", conn_id, None)
    }
    assert out["members"] == [
        {
            "clientId": "js-key",
            "connectionId": conn_id,
            "action": "present",
            "data": {"type": "json", "value": {"mood": "ok"}},
        }
    ]
    assert out["pages"] == [
        {"names": ["r2", "r1"], "hasNext": True, "isLast": False},
        {"names": ["binary", "json"], "hasNext": True, "isLast": False},
        {"names": ["text", "before-attach"], "hasNext": False, "isLast": True},
    ]
    assert out["untilAttach"] == ["before-attach"]
    assert out["tokenClientId"] == "js-token"
    assert [(m["name"], m["clientId"]) for m in out["tokenReceived"]] == [
        ("from-token", "js-token")
    ]
    assert out["tokenHistory"] == {"code": 40160, "statusCode": 401}
    assert (out["restTokenMessage"]["name"], out["restTokenMessage"]["clientId"]) == (
        "rest-token",
        "js-token",
    )
    assert out["authCallbacks"] == 2


@pytest.mark.parametrize(("js_binary", "py_binary"), PAIRS)
def test_ably_js_publishes_python_sdk_subscribes(
    js_peer: Any, emulator: Emulator, key: str, js_binary: bool, py_binary: bool
) -> None:
    peer = js_peer(key, js_binary, clientId="js-pub", token=True)
    js_id = peer.call("ready")["connectionId"]

    async def scenario() -> list[Any]:
        async with PyRealtime(emulator, key, py_binary, "py-sub") as client:
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            await client.channels.get("js-to-py").subscribe(inbox.put_nowait)
            for name, payload in PAYLOADS:
                await asyncio.to_thread(
                    peer.call, "publish", channel="js-to-py", name=name, data=payload
                )
            return [await asyncio.wait_for(inbox.get(), TIMEOUT) for _ in PAYLOADS]

    got = asyncio.run(scenario())
    assert [(m.name, describe(m.data)) for m in got] == PAYLOADS
    assert {(m.client_id, m.connection_id) for m in got} == {("js-pub", js_id)}
    assert [m.id for m in got] == [f"{js_id}:{i}:0" for i in range(len(PAYLOADS))]


@pytest.mark.parametrize(("js_binary", "py_binary"), PAIRS)
def test_python_sdk_publishes_ably_js_subscribes(
    js_peer: Any, emulator: Emulator, key: str, js_binary: bool, py_binary: bool
) -> None:
    peer = js_peer(key, js_binary, clientId="js-sub")
    peer.call("ready")
    peer.call("subscribe", channel="py-to-js")

    async def scenario() -> str:
        async with PyRealtime(emulator, key, py_binary, "py-pub") as client:
            channel = client.channels.get("py-to-js")
            for name, payload in PAYLOADS:
                await channel.publish(name, make(payload))
            return str(client.connection.connection_manager.connection_id)

    py_id = asyncio.run(scenario())
    messages = peer.call("messages", channel="py-to-js", count=len(PAYLOADS))["messages"]
    assert [(m["name"], m["data"]) for m in messages] == PAYLOADS
    assert {(m["clientId"], m["connectionId"]) for m in messages} == {("py-pub", py_id)}


@pytest.mark.parametrize(("js_binary", "py_binary"), PAIRS[:2])
def test_presence_across_sdks(
    js_peer: Any, emulator: Emulator, key: str, js_binary: bool, py_binary: bool
) -> None:
    peer = js_peer(key, js_binary, clientId="js-member", token=True)
    peer.call("ready")
    peer.call("enter", channel="lobby", data={"type": "binary", "value": "cafe"})

    async def scenario() -> dict[str, Any]:
        async with PyRealtime(emulator, key, py_binary, "py-member") as client:
            channel = client.channels.get("lobby")
            await channel.presence.enter({"sdk": "python"})
            js_view = await asyncio.to_thread(
                peer.call, "members", channel="lobby", clientIds=["js-member", "py-member"]
            )
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while True:
                mine = {m.client_id: m.data for m in await channel.presence.get()}
                if len(mine) == 2 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.02)
            await channel.presence.leave()
            return {"js": js_view["members"], "py": mine}

    views = asyncio.run(scenario())
    js_members = {m["clientId"]: m["data"] for m in views["js"]}
    assert js_members == {
        "js-member": {"type": "binary", "value": "cafe"},
        "py-member": {"type": "json", "value": {"sdk": "python"}},
    }
    assert {m["action"] for m in views["js"]} == {"present"}
    assert views["py"] == {"js-member": bytes.fromhex("cafe"), "py-member": {"sdk": "python"}}


@pytest.mark.parametrize("js_binary", [True, False], ids=["js-msgpack", "js-json"])
def test_history_written_by_ably_js_paged_by_python_sdk(
    js_peer: Any, emulator: Emulator, key: str, js_binary: bool
) -> None:
    peer = js_peer(key, js_binary, clientId="js-writer")
    peer.call("ready")
    for index in range(5):
        peer.call("publish", channel="ledger", name=f"e{index}", data=PAYLOADS[index % 3][1])
    rest = rest_sync(emulator, not js_binary, key=key)
    try:
        page = rest.channels.get("ledger").history(direction="forwards", limit=2)
        names, payloads = [], []
        while True:
            names.append([m.name for m in page.items])
            payloads.extend(describe(m.data) for m in page.items)
            if not page.has_next():
                break
            page = page.next()
    finally:
        rest.close()
    assert names == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert payloads == [PAYLOADS[i % 3][1] for i in range(5)]


@pytest.mark.parametrize("raw_format", ["json", "msgpack"])
@pytest.mark.parametrize("js_binary", [True, False], ids=["js-msgpack", "js-json"])
def test_raw_websocket_receives_ably_js_messages(
    js_peer: Any, emulator: Emulator, key: str, js_binary: bool, raw_format: str
) -> None:
    """The wire form a non-SDK subscriber sees: bytes as msgpack bin, or base64 in JSON."""
    query = urlencode({"key": key, "format": raw_format, "v": "6"})
    ws = websocket.create_connection(f"{emulator.ws_url}/?{query}", timeout=TIMEOUT)
    try:
        frames = _RawFrames(ws)
        assert frames.next_with_action(4)["connectionId"]
        frames.send(raw_format, {"action": 10, "channel": "raw"})
        assert frames.next_with_action(11)["channel"] == "raw"

        peer = js_peer(key, js_binary, clientId="js-raw")
        js_id = peer.call("ready")["connectionId"]
        for name, payload in PAYLOADS:
            peer.call("publish", channel="raw", name=name, data=payload)
        messages = [frames.next_with_action(15)["messages"][0] for _ in PAYLOADS]
    finally:
        ws.close()
    by_name = {m["name"]: m for m in messages}
    assert {m["connectionId"] for m in messages} == {js_id}
    assert by_name["text"]["data"] == "héllo" and "encoding" not in by_name["text"]
    assert by_name["json"]["encoding"] == "json"
    assert json.loads(by_name["json"]["data"]) == PAYLOADS[1][1]["value"]
    if raw_format == "msgpack":
        assert by_name["binary"]["data"] == bytes.fromhex(PAYLOADS[2][1]["value"])
        assert "encoding" not in by_name["binary"]
    else:
        assert by_name["binary"]["encoding"] == "base64"
        assert base64.b64decode(by_name["binary"]["data"]).hex() == PAYLOADS[2][1]["value"]


class _RawFrames:
    """Minimal ProtocolMessage reader/writer over a websocket-client socket."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    def send(self, fmt: str, pm: dict[str, Any]) -> None:
        if fmt == "json":
            self.ws.send(json.dumps(pm))
        else:
            self.ws.send_binary(msgpack.packb(pm, use_bin_type=True))

    def next_with_action(self, action: int) -> dict[str, Any]:
        while True:
            raw = self.ws.recv()
            pm: dict[str, Any] = (
                msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw)
            )
            if pm.get("action") == action:
                return pm


def test_ably_js_receives_inband_occupancy(
    js_peer: Any, emulator: Emulator, app: dict[str, Any]
) -> None:
    """``occupancy=metrics`` channel param: ``[meta]occupancy`` messages decoded by ably-js."""
    key = str(app["keys"][0]["keyStr"])
    peer = js_peer(key, True, clientId="js-meta")
    peer.call("ready")
    peer.call("subscribe", channel="room", params={"occupancy": "metrics"})
    first = peer.call("messages", channel="room", count=1)["messages"][0]
    assert first["name"] == "[meta]occupancy" and first["encoding"] is None
    assert first["data"]["type"] == "json"
    assert first["data"]["value"]["metrics"]["connections"] == 1

    query = urlencode({"key": key, "format": "json", "v": "6"})
    ws = websocket.create_connection(f"{emulator.ws_url}/?{query}", timeout=TIMEOUT)
    try:
        frames = _RawFrames(ws)
        frames.next_with_action(4)
        frames.send("json", {"action": 10, "channel": "room"})
        frames.next_with_action(11)
        second = peer.call("messages", channel="room", count=2)["messages"][1]
    finally:
        ws.close()
    assert second["data"]["value"]["metrics"]["connections"] == 2


def test_ably_js_applies_the_emulators_vcdiff_deltas(
    js_peer: Any, emulator: Emulator, key: str, binary: bool, channel_name: str
) -> None:
    """``delta=vcdiff``: ably-js with Ably's own vcdiff plugin decodes the emulator's deltas
    (our client, subscribed alongside, counts them: all but the first message)."""
    import vcdiff_decoder

    from ably_bridge.realtime import AblyRealtime
    from ably_bridge.rest.client import AblyRest

    class Counting:
        calls = 0

        def decode(self, delta: bytes, base: bytes) -> bytes:
            Counting.calls += 1
            return bytes(vcdiff_decoder.decode(base, delta))

    peer = js_peer(key, binary, clientId="js-deltas")
    peer.call("ready")
    peer.call("subscribe", channel=channel_name, params={"delta": "vcdiff"})
    ours = AblyRealtime(
        key=key, endpoint=emulator.host, port=emulator.port, tls=False,
        use_binary_protocol=binary, vcdiff_decoder=Counting(),
    )  # fmt: skip
    try:
        watched = ours.channels.get(channel_name, params={"delta": "vcdiff"})
        seen: list[Any] = []
        watched.subscribe(seen.append)
        watched.attach(timeout=TIMEOUT)
        payloads: list[Any] = [
            *(("a sentence that repeats, " * 6) + str(i) for i in range(4)),
            {"reading": 1, "note": "y" * 60},
            {"reading": 2, "note": "y" * 60},
            b"\x00\x01\xfe" * 40,
            b"\x00\x01\xfe" * 40 + b"\xff",
        ]
        rest = AblyRest(key=key, endpoint=emulator.host, port=emulator.port, tls=False)
        for payload in payloads:
            rest.channels.get(channel_name).publish("m", payload)
        got = peer.call("messages", channel=channel_name, count=len(payloads))["messages"]
        assert [m["data"] for m in got] == [describe(p) for p in payloads]
        assert all(m["encoding"] is None for m in got)
        deadline = time.monotonic() + TIMEOUT  # (ours reads the same deltas in parallel)
        while len(seen) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m.data for m in seen] == payloads
        assert Counting.calls == len(payloads) - 1
    finally:
        ours.close(timeout=TIMEOUT)


def test_ably_js_on_its_own_over_comet(
    node: str, emulator: Emulator, key: str, channel_name: str
) -> None:
    """The same session over the comet (long-polling) transport only, which is JSON."""
    config = js_config(emulator, key, False, channel=channel_name, transports=["comet"])
    out = run_js(node, "basics.js", config, timeout=60.0)
    received = out["received"]
    assert [m["name"] for m in received] == ["text", "json", "binary"]
    assert [m["data"] for m in received] == [
        {"type": "string", "value": "hello"},
        {"type": "json", "value": {"a": [1, 2], "b": "c"}},
        {"type": "binary", "value": "0001feff"},
    ]
    conn_id = out["connectionId"]
    assert [m["id"] for m in received] == [f"{conn_id}:{i}:0" for i in range(3)]
    assert [m["clientId"] for m in out["members"]] == ["js-key"]


def test_ably_js_annotations(node: str, emulator: Emulator, binary: bool) -> None:
    """RTAN1/RTAN4/RSAN1-3: ably-js publishes, deletes, subscribes to and pages
    annotations; summaries reach its message listener and stay on the message."""
    created = emulator.create_app(
        {"keys": [{}], "namespaces": [{"id": "mutable", "mutableMessages": True}]}
    )
    try:
        key = str(created["keys"][0]["keyStr"])
        config = js_config(emulator, key, binary, channel="mutable:js-annotations")
        out = run_js(node, "annotations.js", config)
    finally:
        emulator.delete_app(created["appId"])
    serial = out["messageSerial"]
    kind = "reaction:distinct.v1"
    assert out["viaRealtime"]["action"] == "annotation.create"
    assert (out["viaRealtime"]["clientId"], out["viaRest"]["clientId"]) == (
        "js-annotator",
        "js-rest",
    )
    assert out["deleted"]["action"] == "annotation.delete"
    sent = [out["viaRealtime"], out["viaRest"], out["deleted"]]
    assert all(a["messageSerial"] == serial and a["type"] == kind for a in sent)
    assert serial < sent[0]["serial"] < sent[1]["serial"] < sent[2]["serial"]

    def up(*clients: str) -> dict[str, Any]:
        entry = {"total": len(clients), "clientIds": list(clients), "clipped": False}
        return {kind: {"up": entry}}

    assert out["summaries"] == [
        {"action": "message.summary", "serial": serial, "summary": up("js-annotator")},
        {"action": "message.summary", "serial": serial, "summary": up("js-annotator", "js-rest")},
        {"action": "message.summary", "serial": serial, "summary": up("js-rest")},
    ]
    assert [len(p) for p in out["pages"]] == [2, 1]
    assert [a["serial"] for p in out["pages"] for a in p] == [a["serial"] for a in sent]
    assert out["historySummary"] == up("js-rest")
