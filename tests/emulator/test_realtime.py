"""Realtime protocol of the emulator over websocket-client, in JSON and msgpack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from ably_bridge.emulator import Emulator
from tests.support.wait import eventually

from .conftest import RT, b64, rest_post

ACK, NACK, CONNECTED, DISCONNECTED, ERROR = 1, 2, 4, 6, 9
ATTACHED, DETACHED, PRESENCE, MESSAGE, SYNC, CLOSED = 11, 13, 14, 15, 16, 8
HAS_PRESENCE, HAS_BACKLOG, RESUMED = 1, 2, 4
SUBSCRIBE, PUBLISH, PRESENCE_MODE, PRESENCE_SUBSCRIBE = 1 << 18, 1 << 17, 1 << 16, 1 << 19


def _token(emu: Emulator, key: dict[str, Any], **params: Any) -> dict[str, Any]:
    r = rest_post(emu, f"/keys/{key['keyName']}/requestToken", key["keyStr"], params)
    assert r.status_code == 200, r.text
    details: dict[str, Any] = r.json()
    return details


def test_connected_details(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    rt = rt_factory(fmt, key=root_key, clientId="carol")
    pm = rt.connected()
    details = pm["connectionDetails"]
    assert pm["connectionId"] and details["connectionKey"].startswith(pm["connectionId"] + "!")
    assert details["clientId"] == "carol" and details["maxMessageSize"] == 65536
    assert details["connectionStateTtl"] == 120000 and details["maxIdleInterval"] == 15000
    rt.send({"action": 0, "id": "ping1"})
    assert rt.expect(0, id="ping1")


def test_bad_credentials_get_error(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    rt = rt_factory(fmt, key=root_key + "x")
    assert rt.expect(ERROR)["error"]["code"] == 40101
    assert rt.closed_by_server()
    assert rt_factory(fmt, key="nonsense").expect(ERROR)["error"]["code"] == 40005
    assert rt_factory(fmt, access_token="zzz").expect(ERROR)["error"]["code"] == 40143
    assert rt_factory(fmt, key=root_key, v="1").expect(ERROR)["error"]["code"] == 40017


def test_heartbeats_when_asked(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    rt = rt_factory(fmt, key=root_key, heartbeats="true")
    rt.connected()
    assert rt._next(3)["action"] == 0  # periodic HEARTBEAT (200 ms in the test config)


def test_attach_publish_fanout_and_echo(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    pub = rt_factory(fmt, key=root_key, clientId="pub")
    sub = rt_factory("json" if fmt == "msgpack" else "msgpack", key=root_key)
    quiet = rt_factory(fmt, key=root_key, echo="false")
    for rt in (pub, sub, quiet):
        rt.connected()
        attached = rt.attach("room")
        assert attached["flags"] & (SUBSCRIBE | PUBLISH | PRESENCE_MODE | PRESENCE_SUBSCRIBE)
        assert attached["channelSerial"] is not None
    payload: dict[str, Any] = {"name": "greet", "data": b"\x01\x02"}
    if fmt == "json":
        payload.update(data="AQI=", encoding="base64")
    ack = pub.publish("room", [payload])
    assert ack["action"] == ACK and ack["count"] == 1 and len(ack["res"][0]["serials"]) == 1
    got = sub.expect(MESSAGE, channel="room")
    msg = got["messages"][0]
    assert msg["name"] == "greet" and msg["clientId"] == "pub"
    assert msg["connectionId"] == got["connectionId"] and msg["id"].endswith(":0:0")
    if sub.fmt == "json":
        assert (msg["data"], msg["encoding"]) == ("AQI=", "base64")
    else:
        assert msg["data"] == b"\x01\x02"
    assert pub.expect(MESSAGE, channel="room")["messages"][0]["name"] == "greet"  # echo on
    quiet.publish("room", [{"name": "q"}])
    assert sub.expect(MESSAGE)["messages"][0]["name"] == "q"
    pub.publish("room", [{"name": "after"}])
    # quiet (echo=false) sees others' messages but never its own
    assert quiet.expect(MESSAGE)["messages"][0]["name"] == "greet"
    assert quiet.expect(MESSAGE)["messages"][0]["name"] == "after"


def test_modes_and_capability(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    limited = app["keys"][2]  # channel3 subscribe only, channel0 publish only
    rt = rt_factory(fmt, key=limited["keyStr"])
    rt.connected()
    rt.send({"action": 10, "channel": "forbidden"})
    err = rt.expect(ERROR, channel="forbidden")
    assert err["error"]["code"] == 40160
    attached = rt.attach("channel3")
    assert attached["flags"] & SUBSCRIBE and not attached["flags"] & PUBLISH
    nack = rt.publish("channel3", [{"data": "x"}])
    assert nack["action"] == NACK and nack["error"]["code"] in (40160, 40165)
    root = rt_factory(fmt, key=app["keys"][0]["keyStr"])
    root.connected()
    assert root.attach("sub-only", flags=SUBSCRIBE)["flags"] & PUBLISH == 0
    assert root.publish("sub-only", [{"data": 1}])["error"]["code"] == 40165
    rt.send({"action": 10, "channel": ":bad"})
    assert rt.expect(ERROR, channel=":bad")["error"]["code"] == 40010
    rt.send({"action": 0, "id": "still-up"})
    assert rt.expect(0, id="still-up")


def test_nacks(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    rt = rt_factory(fmt, key=root_key, clientId="me")
    rt.connected()
    assert rt.publish("n", [{"data": "x" * 70000}])["error"]["code"] == 40009
    assert rt.publish("n", [{"clientId": "other"}])["error"]["code"] == 40012
    serial = rt.msg_serial
    rt.msg_serial += 1
    force = {"_forceNack": "true"}
    rt.send({"action": 15, "channel": "n", "msgSerial": serial, "messages": [{}], "params": force})
    nack = rt.expect(NACK, msgSerial=serial)
    assert nack["error"]["code"] == 40099
    rt.send({"action": 15, "channel": "n", "msgSerial": serial, "messages": [{}]})
    assert rt.expect(NACK, msgSerial=serial) == nack  # the same NACK again, params or not
    # re-sent msgSerial is answered again, not re-published (RTN19a)
    ok = rt.publish("n", [{"name": "once"}])
    assert ok["action"] == ACK
    rt.send(
        {"action": 15, "channel": "n", "msgSerial": ok["msgSerial"], "messages": [{"name": "once"}]}
    )
    assert rt.expect(ACK, msgSerial=ok["msgSerial"]) == ok


def test_presence_sync_and_leave(
    emulator: Emulator, rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    alice = rt_factory(fmt, key=root_key, clientId="alice")
    alice.connected()
    alice.attach("lobby")
    assert alice.presence("lobby", [{"action": 2, "data": "hi"}])["action"] == ACK
    own = alice.expect(PRESENCE)["presence"][0]
    assert (own["action"], own["clientId"], own["data"]) == (2, "alice", "hi")
    assert alice.presence("lobby", [{"action": 2, "clientId": "bob"}])["error"]["code"] == 40012
    anon = rt_factory(fmt, key=root_key)
    anon.connected()
    assert anon.presence("lobby", [{"action": 2}])["error"]["code"] == 91000
    assert (
        anon.presence("lobby", [{"action": 2, "clientId": "robot"}])["action"] == ACK
    )  # enterClient
    watcher = rt_factory(fmt, key=root_key)
    watcher.connected()
    attached = watcher.attach("lobby")
    assert attached["flags"] & HAS_PRESENCE
    sync = watcher.expect(SYNC, channel="lobby")
    assert sync["channelSerial"].endswith(":")
    assert {m["clientId"] for m in sync["presence"]} == {"alice", "robot"}
    assert {m["action"] for m in sync["presence"]} == {1}
    alice.presence("lobby", [{"action": 4, "data": "upd"}])
    assert watcher.expect(PRESENCE)["presence"][0]["action"] == 4
    alice.presence("lobby", [{"action": 3}])
    left = watcher.expect(PRESENCE)["presence"][0]
    assert (left["action"], left["clientId"], left["data"]) == (3, "alice", "upd")
    # abrupt loss of robot's connection: synthetic LEAVE after the (200 ms) delay
    anon.ws.sock.close()
    leave = watcher.expect(PRESENCE, timeout=5)["presence"][0]
    assert (leave["action"], leave["clientId"]) == (3, "robot")
    assert not leave["id"].startswith(leave["connectionId"])


def test_sync_is_paged(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    bulk = rt_factory(fmt, key=root_key)
    bulk.connected()
    items = [{"action": 2, "clientId": f"c{i}"} for i in range(250)]
    assert bulk.presence("crowd", items)["action"] == ACK
    watcher = rt_factory(fmt, key=root_key)
    watcher.connected()
    watcher.attach("crowd")
    pages = [watcher.expect(SYNC, channel="crowd") for _ in range(3)]
    assert [len(p["presence"]) for p in pages] == [100, 100, 50]
    assert not pages[0]["channelSerial"].endswith(":") and pages[2]["channelSerial"].endswith(":")


def test_detach_and_close(rt_factory: Callable[..., RT], root_key: str, fmt: str) -> None:
    a = rt_factory(fmt, key=root_key, clientId="a")
    b = rt_factory(fmt, key=root_key)
    for rt in (a, b):
        rt.connected()
        rt.attach("dc")
    a.presence("dc", [{"action": 2}])
    b.expect(PRESENCE)
    b.send({"action": 12, "channel": "dc"})
    assert b.expect(DETACHED, channel="dc")
    a.publish("dc", [{"name": "unseen"}])
    b.send({"action": 0, "id": "x"})
    assert b.expect(0, id="x")
    assert not [f for f in b.backlog if f.get("action") == MESSAGE]
    b.attach("dc")
    a.send({"action": 7})
    assert a.expect(CLOSED)
    assert b.expect(PRESENCE)["presence"][0]["action"] == 3  # LEAVE at once on CLOSE


def test_rewind_and_channel_serial_resume(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    for i in range(4):
        pub.publish("rw", [{"name": f"m{i}"}])
    late = rt_factory(fmt, key=root_key)
    late.connected()
    attached = late.attach("[?rewind=2]rw")
    assert attached["flags"] & HAS_BACKLOG and attached["params"] == {"rewind": "2"}
    names = [late.expect(MESSAGE)["messages"][0]["name"] for _ in range(2)]
    assert names == ["m2", "m3"]
    other = rt_factory(fmt, key=root_key)
    other.connected()
    point = other.attach("rw")["channelSerial"]
    pub.publish("rw", [{"name": "m4"}])
    again = rt_factory(fmt, key=root_key)
    again.connected()
    resumed = again.attach("rw", channelSerial=point)
    assert resumed["flags"] & RESUMED
    assert again.expect(MESSAGE)["messages"][0]["name"] == "m4"


def test_resume_replays_and_failed_resume(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    sub = rt_factory(fmt, key=root_key)
    first = sub.connected()
    sub.attach("rs")
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    pub.publish("rs", [{"name": "seen"}])
    seen = sub.expect(MESSAGE)
    sub.ws.sock.close()  # abrupt loss
    pub.publish("rs", [{"name": "missed"}])
    key = first["connectionDetails"]["connectionKey"]
    back = rt_factory(fmt, key=root_key, resume=key)
    again = back.connected()
    assert again["connectionId"] == first["connectionId"] and "error" not in again
    assert again["connectionDetails"]["connectionKey"] != key
    reattached = back.attach("rs", channelSerial=seen["channelSerial"])
    assert reattached["flags"] & RESUMED
    assert back.expect(MESSAGE)["messages"][0]["name"] == "missed"
    bad = rt_factory(fmt, key=root_key, resume=first["connectionId"] + "!wrong")
    failed = bad.connected()
    assert failed["connectionId"] != first["connectionId"]
    assert failed["error"]["code"] == 80008
    assert rt_factory(fmt, key=root_key, resume="garbage").connected()["error"]["code"] == 80018


def test_token_auth_and_live_auth(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][0]
    tok = _token(emulator, key, clientId="tok")
    rt = rt_factory(fmt, accessToken=tok["token"])
    assert rt.connected()["connectionDetails"]["clientId"] == "tok"
    assert (
        rt_factory(fmt, access_token=tok["token"], clientId="else").expect(ERROR)["error"]["code"]
        == 40012
    )
    rt.attach("chan")
    narrower = _token(emulator, key, clientId="tok", capability='{"other":["*"]}')
    rt.send({"action": 17, "auth": {"accessToken": narrower["token"]}})
    assert rt.expect(CONNECTED)["connectionDetails"]["clientId"] == "tok"
    assert rt.expect(ERROR, channel="chan")["error"]["code"] == 40160
    foreign = _token(emulator, key, clientId="someone")
    rt.send({"action": 17, "auth": {"accessToken": foreign["token"]}})
    assert rt.expect(ERROR)["error"]["code"] == 40102


def test_token_expiry_disconnects_then_resume(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    root = emu.root_key
    for fmt in ("json", "msgpack"):
        r = requests.post(
            f"{emu.url}/keys/{root.split(':')[0]}/requestToken",
            json={"ttl": 5000, "clientId": "x"},
            auth=tuple(root.split(":", 1)),
            timeout=5,
        )
        token = r.json()["token"]
        rt = RT(emu, fmt, access_token=token)
        first = rt.connected()
        rt.attach("exp")
        clock.advance(6)
        gone = rt.expect(DISCONNECTED)
        assert (gone["error"]["code"], gone["error"]["statusCode"]) == (40142, 401)
        assert rt.closed_by_server()
        renewed = requests.post(
            f"{emu.url}/keys/{root.split(':')[0]}/requestToken",
            json={"ttl": 60000, "clientId": "x"},
            auth=tuple(root.split(":", 1)),
            timeout=5,
        ).json()["token"]
        key = first["connectionDetails"]["connectionKey"]
        back = RT(emu, fmt, access_token=renewed, resume=key)
        assert back.connected()["connectionId"] == first["connectionId"]
        back.close()
        rt.close()
        clock.advance(2)


def test_synthetic_leave_waits_for_delay_and_ttl(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    watcher = RT(emu, "json", key=emu.root_key)
    watcher.connected()
    watcher.attach("fl")
    member = RT(emu, "msgpack", key=emu.root_key, clientId="m")
    first = member.connected()
    member.attach("fl")
    member.presence("fl", [{"action": 2}])
    watcher.expect(PRESENCE)
    member.ws.sock.close()
    eventually(lambda: first["connectionId"] not in emu.connection_ids())
    clock.advance(10)
    watcher.send({"action": 0, "id": "p"})
    watcher.expect(0, id="p")
    assert not [f for f in watcher.backlog if f.get("action") == PRESENCE]
    clock.advance(6)
    assert watcher.expect(PRESENCE)["presence"][0]["action"] == 3
    clock.advance(200)  # past connectionStateTtl: resume fails
    late = RT(
        emu,
        "json",
        key=emu.root_key,
        clientId="m",
        resume=first["connectionDetails"]["connectionKey"],
    )
    assert late.connected()["error"]["code"] == 80008
    for rt in (watcher, late):
        rt.close()


def test_connection_faults(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][0]["keyStr"]
    emulator.faults.refuse_connections(count=1, code=80000, status=503, app_id=app["appId"])
    assert rt_factory(fmt, key=key).expect(ERROR)["error"]["code"] == 80000
    emulator.faults.refuse_connections(count=1, app_id=app["appId"])
    assert rt_factory(fmt, key=key).closed_by_server()
    rt = rt_factory(fmt, key=key)
    conn_id = rt.connected()["connectionId"]
    rt.attach("f")
    assert emulator.faults.channel_fault(app["appId"], "f", action="detached", code=90198) == 1
    assert rt.expect(DETACHED, channel="f")["error"]["code"] == 90198
    rt.attach("f")
    emulator.faults.channel_fault(app["appId"], "f", action="error", code=40160, status=401)
    assert rt.expect(ERROR, channel="f")["error"]["code"] == 40160
    r = requests.post(
        emulator.url + "/_emulator/faults/disconnect",
        json={"connection_id": conn_id, "code": 50003, "status": 503},
        timeout=5,
    )
    assert r.json() == {"affected": 1}
    assert rt.expect(DISCONNECTED)["error"]["code"] == 50003
    assert rt.closed_by_server()
    other = rt_factory(fmt, key=key)
    other.connected()
    assert emulator.faults.drop_connections(app_id=app["appId"]) == 1
    assert other.closed_by_server()


def test_forget_and_stall_faults(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][0]["keyStr"]
    rt = rt_factory(fmt, key=key)
    first = rt.connected()
    emulator.faults.stall(connection_id=first["connectionId"])
    rt.send({"action": 0, "id": "held"})
    eventually(
        lambda: emulator.faults.held(connection_id=first["connectionId"]) >= 1,
        what="the heartbeat's answer to be held",
    )
    assert not rt.readable()  # nothing reached the client
    emulator.faults.stall(False, connection_id=first["connectionId"])
    assert rt.expect(0, id="held")
    assert emulator.faults.forget_connections(app_id=app["appId"]) == 1
    assert rt.closed_by_server()
    back = rt_factory(fmt, key=key, resume=first["connectionDetails"]["connectionKey"])
    assert back.connected()["error"]["code"] == 80008


def test_bad_frames_do_not_hurt_server(
    emulator: Emulator, rt_factory: Callable[..., RT], root_key: str
) -> None:
    rt = rt_factory("json", key=root_key)
    rt.connected()
    rt.ws.send("{not json")
    assert rt.expect(ERROR)["error"]["code"] == 40001
    rt2 = rt_factory("json", key=root_key)
    rt2.connected()
    rt2.send({"action": 99})
    rt2.send({"action": 0, "id": "ok"})
    assert rt2.expect(0, id="ok")
    assert requests.get(emulator.url + "/_emulator/health", timeout=5).json()["ok"]
    tok = rest_post(emulator, f"/keys/{root_key.split(':')[0]}/requestToken", root_key, {})
    assert RT(emulator, "json", accessToken=b64("x")).expect(ERROR)["error"]["code"] == 40143
    assert tok.status_code == 200


def test_late_frames_of_a_forgotten_connection_are_dropped(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    """A frame queued on a transport when its connection was forgotten changes nothing.

    It once made a ghost member: an ENTER with the forgotten connectionId, which no
    LEAVE ever ended (seen by ably-js in the cross-SDK presence test under load).
    """
    key = app["keys"][0]["keyStr"]
    ghost = rt_factory(fmt, key=key, clientId="ghost")
    conn_id = ghost.connected()["connectionId"]
    ghost.attach("haunt")
    assert ghost.presence("haunt", [{"action": 2, "data": "in"}])["action"] == ACK
    runtime = emulator.runtime
    assert runtime is not None
    session = runtime.hub.sessions[conn_id]
    late = {"action": 14, "channel": "haunt", "msgSerial": 99, "presence": [{"action": 2}]}

    def forget_then_late_frame() -> bool:  # one step of the emulator's loop: no race
        assert emulator.faults.forget_connections(connection_id=conn_id) == 1
        return bool(session.handle(late, fmt))

    assert emulator.call(forget_then_late_frame) is False
    channel = runtime.state.apps[app["appId"]].channels["haunt"]
    assert [m for m in channel.presence.values() if m.get("connectionId") == conn_id] == []
