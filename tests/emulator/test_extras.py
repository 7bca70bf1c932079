"""Emulator features beyond the basics, each shown by its effect on a client.

Faults ``delay_frames``, ``stop_heartbeats`` and ``expire_tokens``; ``recover``
(RTN16); HS256 JWTs (ably-protocol.md 6.7); derived ``[filter=...]`` channels
(RTS5); publishing on behalf of a realtime connection with ``connectionKey``
(TM2h); presence history paging (RSP4); ``maxFrameSize``; WebSocket framing.
Time-dependent cases run on the ``FakeClock`` emulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
import websocket

from ably_bridge.emulator import Emulator
from ably_bridge.emulator.outbox import ws_frame

from .conftest import RT, basic, rest_get, rest_post

HEARTBEAT, ACK, CONNECTED, DISCONNECTED, ERROR = 0, 1, 4, 6, 9
ATTACHED, PRESENCE, MESSAGE = 11, 14, 15
RESUMED = 4


def _quiet_for(rt: RT, seconds: float) -> list[dict[str, Any]]:
    """Data frames (other than heartbeats) that arrive within ``seconds``; expected: none."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            pm = rt._next(max(0.01, deadline - time.monotonic()))
        except AssertionError:
            break
        seen.append(pm)
    return seen


def _frames_until_ping(rt: RT, ping_id: str) -> list[tuple[int, Any]]:
    """(opcode, ProtocolMessage or None) of every frame up to the echo of ping ``ping_id``."""
    rt.send({"action": HEARTBEAT, "id": ping_id})
    out: list[tuple[int, Any]] = []
    rt.ws.settimeout(5)
    while True:
        opcode, data = rt.ws.recv_data(control_frame=True)
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            pm = json.loads(data) if opcode == websocket.ABNF.OPCODE_TEXT else _unpack(data)
            if pm.get("action") == HEARTBEAT and pm.get("id") == ping_id:
                return out
            out.append((opcode, pm))
        else:
            out.append((opcode, None))


def _unpack(data: bytes) -> dict[str, Any]:
    import msgpack

    return dict(msgpack.unpackb(data, raw=False))


def _token(emu: Emulator, key: str, **params: Any) -> str:
    r = rest_post(emu, f"/keys/{key.split(':')[0]}/requestToken", key, params)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _jwt(key: str, claims: dict[str, Any], **header: Any) -> str:
    """An HS256 JWT signed with ``key``'s secret, ``kid`` = its keyName (6.7)."""
    key_name, _, secret = key.partition(":")

    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = part({"alg": "HS256", "typ": "JWT", "kid": key_name, **header})
    body = part(claims)
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + base64.b64encode(token.encode()).decode()}


# -- faults ------------------------------------------------------------------------------
def test_delay_frames_holds_frames_in_order(fake_emulator: Any, fmt: str) -> None:
    emu, clock = fake_emulator
    rt = RT(emu, fmt, key=emu.root_key)
    conn_id = rt.connected()["connectionId"]
    assert emu.faults.delay_frames(5, connection_id=conn_id) == 1
    rt.send({"action": HEARTBEAT, "id": "first"})
    rt.send({"action": HEARTBEAT, "id": "second"})
    assert _quiet_for(rt, 0.2) == []
    clock.advance(4.9)
    assert _quiet_for(rt, 0.1) == []
    clock.advance(0.2)
    assert rt.expect(HEARTBEAT, id="first") and rt.expect(HEARTBEAT, id="second")
    emu.faults.delay_frames(0, connection_id=conn_id)
    rt.send({"action": HEARTBEAT, "id": "prompt"})
    assert rt.expect(HEARTBEAT, id="prompt")
    rt.close()


def test_stop_heartbeats_silences_both_kinds(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    asked = RT(emu, "json", key=emu.root_key, heartbeats="true")
    pinged = RT(emu, "msgpack", key=emu.root_key)  # heartbeats=false: WebSocket pings
    ids = [rt.connected()["connectionId"] for rt in (asked, pinged)]
    clock.advance(15)  # maxIdleInterval
    assert (websocket.ABNF.OPCODE_TEXT, {"action": HEARTBEAT}) in _frames_until_ping(asked, "a1")
    assert (websocket.ABNF.OPCODE_PING, None) in _frames_until_ping(pinged, "p1")
    for conn_id in ids:
        assert emu.faults.stop_heartbeats(connection_id=conn_id) == 1
    clock.advance(31)
    assert _frames_until_ping(asked, "a2") == []
    assert _frames_until_ping(pinged, "p2") == []
    emu.faults.stop_heartbeats(False, connection_id=ids[0])
    clock.advance(15)
    assert _frames_until_ping(asked, "a3") == [(websocket.ABNF.OPCODE_TEXT, {"action": HEARTBEAT})]
    for rt in (asked, pinged):
        rt.close()


def test_expire_tokens_disconnects_token_clients_only(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][0]["keyStr"]
    token = _token(emulator, key, clientId="t")
    with_token = rt_factory(fmt, access_token=token)
    with_key = rt_factory(fmt, key=key)
    with_token.connected()
    with_key.connected()
    assert emulator.faults.expire_tokens(app_id=app["appId"]) >= 1
    gone = with_token.expect(DISCONNECTED)["error"]
    assert (gone["code"], gone["statusCode"]) == (40142, 401)
    assert with_token.closed_by_server()
    with_key.send({"action": HEARTBEAT, "id": "alive"})
    assert with_key.expect(HEARTBEAT, id="alive")
    r = requests.get(f"{emulator.url}/channels/x/messages", headers=_bearer(token), timeout=5)
    assert (r.status_code, r.json()["error"]["code"]) == (401, 40142)
    assert rt_factory(fmt, access_token=token).expect(ERROR)["error"]["code"] == 40142


# -- recover (RTN16) -------------------------------------------------------------------------
def test_recover_keeps_connection_and_dedupes(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    first = rt_factory(fmt, key=root_key, clientId="rec")
    connected = first.connected()
    attached = first.attach("rc")
    acked = first.publish("rc", [{"name": "mine"}])
    last_serial = first.expect(MESSAGE)["channelSerial"]
    first.ws.sock.close()  # the process died; its recovery key survives
    other = rt_factory(fmt, key=root_key)
    other.connected()
    assert other.publish("rc", [{"name": "missed"}])["action"] == ACK

    key = connected["connectionDetails"]["connectionKey"]
    again = rt_factory(fmt, key=root_key, clientId="rec", recover=key)
    back = again.connected()
    assert back["connectionId"] == connected["connectionId"] and "error" not in back
    assert back["connectionDetails"]["connectionKey"] != key  # fresh key (RTN15e)
    reattached = again.attach("rc", channelSerial=last_serial)
    assert reattached["flags"] & RESUMED and attached["channelSerial"] < last_serial
    assert again.expect(MESSAGE)["messages"][0]["name"] == "missed"
    # the recovered msgSerial 0 is answered from memory, not published twice (RTN19a)
    again.send({"action": MESSAGE, "channel": "rc", "msgSerial": 0, "messages": [{"name": "mine"}]})
    assert again.expect(ACK, msgSerial=0)["res"] == acked["res"]
    history = rest_get(emulator, "/channels/rc/messages", root_key).json()
    assert [m["name"] for m in history] == ["missed", "mine"]

    unknown = rt_factory(fmt, key=root_key, recover=connected["connectionId"] + "!nope")
    failed = unknown.connected()
    assert failed["connectionId"] != connected["connectionId"]
    assert failed["error"]["code"] == 80008
    assert rt_factory(fmt, key=root_key, recover="bad").connected()["error"]["code"] == 80018


def test_a_resumed_attach_replays_missed_presence_with_the_messages_in_order(
    root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    """Found by the bridge's chaos run: a resume brought back the messages missed while the
    connection was away but not the presence events, so they were lost for good (the
    channel said RESUMED: nothing to read from history)."""
    watcher = rt_factory(fmt, key=root_key, clientId="watcher")
    connected = watcher.connected()
    attached = watcher.attach("rp")
    watcher.ws.sock.close()  # dropped: the connection stays resumable
    member = rt_factory(fmt, key=root_key, clientId="m")
    member.connected()
    assert member.presence("rp", [{"action": 2, "data": "in"}])["action"] == ACK
    assert member.publish("rp", [{"name": "between"}])["action"] == ACK
    assert member.presence("rp", [{"action": 4, "data": "upd"}])["action"] == ACK
    key = connected["connectionDetails"]["connectionKey"]
    again = rt_factory(fmt, key=root_key, clientId="watcher", resume=key)
    assert again.connected()["connectionId"] == connected["connectionId"]
    resumed = again.attach("rp", channelSerial=attached["channelSerial"])
    assert resumed["flags"] & RESUMED
    frames = [again.expect_any((PRESENCE, MESSAGE)) for _ in range(3)]
    assert [f["action"] for f in frames] == [PRESENCE, MESSAGE, PRESENCE]
    assert [f["presence"][0]["action"] for f in (frames[0], frames[2])] == [2, 4]
    assert frames[0]["presence"][0]["data"] == "in" and frames[2]["presence"][0]["data"] == "upd"
    serials = [f["channelSerial"] for f in frames]
    assert serials == sorted(serials) and serials[0] > attached["channelSerial"]


def test_recover_replaces_a_live_transport(rt_factory: Callable[..., RT], root_key: str) -> None:
    old = rt_factory("json", key=root_key)
    connected = old.connected()
    new = rt_factory("json", key=root_key, recover=connected["connectionDetails"]["connectionKey"])
    assert new.connected()["connectionId"] == connected["connectionId"]
    assert old.closed_by_server()


# -- JWT (6.7) --------------------------------------------------------------------------------
def test_jwt_auth_rest_and_realtime(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][0]["keyStr"]
    now = int(emulator.state.now_ms() / 1000)
    claims = {
        "iat": now,
        "exp": now + 600,
        "x-ably-clientId": "jwt-user",
        "x-ably-capability": json.dumps({"jwt:*": ["publish", "subscribe"]}),
    }
    jwt = _jwt(key, claims)
    rt = rt_factory(fmt, accessToken=jwt)
    assert rt.connected()["connectionDetails"]["clientId"] == "jwt-user"
    rt.attach("jwt:room")
    rt.send({"action": 10, "channel": "elsewhere"})
    assert rt.expect(ERROR, channel="elsewhere")["error"]["code"] == 40160

    url = f"{emulator.url}/channels/jwt:room/messages"
    posted = requests.post(url, json={"name": "j"}, headers=_bearer(jwt), timeout=5)
    assert posted.status_code == 201, posted.text
    assert rt.expect(MESSAGE)["messages"][0]["clientId"] == "jwt-user"
    refused = requests.get(url, headers={"Authorization": f"Bearer {jwt}"}, timeout=5)  # raw form
    assert refused.json()["error"]["code"] == 40160  # no history capability

    forged = jwt[: jwt.rindex(".") + 1] + base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("=")
    expired = _jwt(key, {**claims, "iat": now - 700, "exp": now - 100})
    unknown_kid = _jwt(key, claims, kid=f"{app['appId']}.nokey")
    unsigned = _jwt(key, claims, alg="none")
    for token, code in ((forged, 40144), (expired, 40142), (unknown_kid, 40144), (unsigned, 40144)):
        assert rt_factory(fmt, accessToken=token).expect(ERROR)["error"]["code"] == code
        r = requests.post(url, json={"name": "no"}, headers=_bearer(token), timeout=5)
        assert (r.status_code, r.json()["error"]["code"]) == (401, code)


def test_jwt_expiry_disconnects_live_connection(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    now = int(emu.state.now_ms() / 1000)
    rt = RT(emu, "json", accessToken=_jwt(emu.root_key, {"iat": now, "exp": now + 5}))
    rt.connected()
    clock.advance(6)
    assert rt.expect(DISCONNECTED)["error"]["code"] == 40142
    assert rt.closed_by_server()


# -- derived channels (RTS5) ------------------------------------------------------------------
def _filtered(expr: str, channel: str, params: str = "") -> str:
    encoded = base64.b64encode(expr.encode()).decode()
    return f"[filter={encoded}{'?' + params if params else ''}]{channel}"


def test_filter_channels_deliver_matching_messages(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    by_name = _filtered("name == 'keep'", "fch")
    by_header = _filtered("headers.kind == `\"a\"` && name != 'skip' || name == 'always'", "fch")
    plain, named, headed = (rt_factory(fmt, key=root_key) for _ in range(3))
    for rt, channel in ((plain, "fch"), (named, by_name), (headed, by_header)):
        rt.connected()
        assert rt.attach(channel)["channel"] == channel
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    sent = [
        {"name": "keep", "extras": {"headers": {"kind": "a"}}},
        {"name": "drop", "extras": {"headers": {"kind": "b"}}},
        {"name": "skip", "extras": {"headers": {"kind": "a"}}},
        {"name": "other", "extras": {"headers": {"kind": "a"}}},
        {"name": "always"},
    ]
    for message in sent:
        assert pub.publish("fch", [message])["action"] == ACK

    def names(rt: RT, channel: str, count: int) -> list[str]:
        frames = [rt.expect(MESSAGE) for _ in range(count)]
        assert {f["channel"] for f in frames} == {channel}  # delivered under the derived name
        return [f["messages"][0]["name"] for f in frames]

    assert names(plain, "fch", 5) == ["keep", "drop", "skip", "other", "always"]
    assert names(named, by_name, 1) == ["keep"]
    assert names(headed, by_header, 3) == ["keep", "other", "always"]
    for rt in (named, headed):
        rt.send({"action": HEARTBEAT, "id": "end"})
        rt.expect(HEARTBEAT, id="end")
        assert not [f for f in rt.backlog if f.get("action") == MESSAGE]
    rewound = rt_factory(fmt, key=root_key)
    rewound.connected()
    rewound.attach(_filtered("name == 'keep'", "fch", "rewind=5"))
    assert rewound.expect(MESSAGE)["messages"][0]["name"] == "keep"


# -- publish on behalf of a connection (TM2h) ----------------------------------------------------
def test_rest_publish_with_connection_key(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    alice = rt_factory(fmt, key=root_key, clientId="alice", echo="false")
    watcher = rt_factory(fmt, key=root_key)
    details = alice.connected()
    watcher.connected()
    alice.attach("behalf")
    watcher.attach("behalf")
    key = details["connectionDetails"]["connectionKey"]
    r = rest_post(
        emulator, "/channels/behalf/messages", root_key, {"name": "n", "connectionKey": key}
    )
    assert r.status_code == 201, r.text
    got = watcher.expect(MESSAGE)
    message = got["messages"][0]
    assert (got["connectionId"], message["connectionId"]) == (details["connectionId"],) * 2
    assert message["clientId"] == "alice" and "connectionKey" not in message
    alice.send({"action": HEARTBEAT, "id": "b"})
    alice.expect(HEARTBEAT, id="b")
    assert not [f for f in alice.backlog if f.get("action") == MESSAGE]  # echo=false honoured
    body = {"name": "n", "connectionKey": details["connectionId"] + "!forged"}
    bad = rest_post(emulator, "/channels/behalf/messages", root_key, body)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 40006)
    body = {"name": "n", "connectionKey": key, "clientId": "mallory"}
    mismatch = rest_post(emulator, "/channels/behalf/messages", root_key, body)
    assert mismatch.json()["error"]["code"] == 40012


# -- presence history (RSP4) ----------------------------------------------------------------------
def test_presence_history_pages(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT]
) -> None:
    member = rt_factory("msgpack", key=root_key, clientId="p")
    member.connected()
    member.attach("ph")
    for action, data in ((2, "in"), (4, "upd"), (4, "upd2"), (3, None)):
        item = {"action": action} if data is None else {"action": action, "data": data}
        assert member.presence("ph", [item])["action"] == ACK
    seen: list[tuple[int, Any]] = []
    url = f"{emulator.url}/channels/ph/presence/history?limit=3&direction=forwards"
    pages = 0
    while url:
        r = requests.get(url, auth=basic(root_key), timeout=5)
        assert r.status_code == 200
        seen += [(m["action"], m.get("data")) for m in r.json()]
        pages += 1
        url = urljoin(r.url, r.links["next"]["url"]) if "next" in r.links else ""
    assert pages == 2
    assert seen == [(2, "in"), (4, "upd"), (4, "upd2"), (3, "upd2")]
    backwards = rest_get(emulator, "/channels/ph/presence/history?limit=1", root_key)
    assert [m["action"] for m in backwards.json()] == [3] and 'rel="next"' in backwards.headers[
        "Link"
    ]


# -- limits and framing --------------------------------------------------------------------------
def test_frame_over_max_frame_size_closes(
    emulator: Emulator, rt_factory: Callable[..., RT], root_key: str
) -> None:
    rt = rt_factory("json", key=root_key)
    rt.connected()
    too_big = emulator.config.max_frame_size + 1
    rt.ws.send(json.dumps({"action": 15, "channel": "big", "messages": [{"data": "x" * too_big}]}))
    assert rt.expect(ERROR)["error"]["code"] == 40009
    assert rt.closed_by_server()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_ws_frame_lengths(size: int) -> None:
    frame = ws_frame(b"x" * size)
    assert frame[0] == 0x82 and frame.endswith(b"x" * size)
    header = len(frame) - size
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)
    assert ws_frame("é")[:2] == bytes((0x81, 2))


def test_format_defaults_to_json(emulator: Emulator, root_key: str) -> None:
    """Without ``format`` Ably speaks JSON (ably-python sends none for JSON)."""
    ws = websocket.create_connection(f"{emulator.ws_url}/?key={root_key}&v=6", timeout=5)
    try:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT and json.loads(data)["action"] == CONNECTED
    finally:
        ws.close()


# -- the output pipeline without sockets --------------------------------------------------------
class _Transport:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered


def test_outbox_batches_delays_and_stalls_in_order() -> None:
    from ably_bridge.clock import FakeClock
    from ably_bridge.emulator.outbox import Flusher, Outbox

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = FakeClock()
        transport = _Transport()
        events: list[str] = []

        def schedule(delay: float, callback: Callable[[], None]) -> Any:
            return clock.call_later(delay, callback)

        out = Outbox(
            lambda: transport,
            Flusher(),
            clock,
            schedule,
            lambda: events.append("closed"),
            lambda: events.append("overflow"),
        )
        out.send(b"a")
        out.send(b"b")
        await asyncio.sleep(0)  # one loop iteration: one write for both
        assert transport.chunks == [b"ab"]
        out.delay_s = 2.0
        out.send(b"c")
        out.delay_s = 0.5  # a shorter delay must not let a later frame overtake
        out.send(b"d")
        clock.advance(1)
        await asyncio.sleep(0)
        assert transport.chunks == [b"ab"]
        out.delay_s = 0.0
        out.stall(True)
        clock.advance(1)
        out.send(b"e")
        await asyncio.sleep(0)
        assert transport.chunks == [b"ab"]
        out.stall(False)
        out.send(None)
        await asyncio.sleep(0)
        assert transport.chunks == [b"ab", b"cde"] and events == ["closed"]
        out.send(b"late")
        await asyncio.sleep(0)
        assert transport.chunks == [b"ab", b"cde"]
        assert loop.is_running()

    asyncio.run(scenario())


def test_outbox_disconnects_a_consumer_that_falls_behind() -> None:
    from ably_bridge.clock import FakeClock
    from ably_bridge.emulator.outbox import MAX_BUFFERED, Flusher, Outbox

    async def scenario() -> list[str]:
        transport = _Transport()
        events: list[str] = []
        clock = FakeClock()
        out = Outbox(
            lambda: transport,
            Flusher(),
            clock,
            clock.call_later,
            lambda: events.append("closed"),
            lambda: events.append("overflow"),
        )
        transport.buffered = MAX_BUFFERED + 1
        out.send(b"x")
        await asyncio.sleep(0)
        return events

    assert asyncio.run(scenario()) == ["overflow"]
