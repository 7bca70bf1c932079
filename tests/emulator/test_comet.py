"""The comet (HTTP long-polling) transport, driven with plain ``requests``.

Comet is JSON only; each test that exchanges messages also has a WebSocket
peer in JSON and in msgpack on the same channel, so both formats meet it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ably_bridge.emulator import Emulator, EmulatorConfig
from tests.support.wait import eventually

from .conftest import RT


@pytest.fixture(scope="module")
def comet_emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(comet_poll_ms=300, comet_idle_ms=1500, presence_leave_delay_ms=100)
    with Emulator(config=config) as emu:
        yield emu


class Comet:
    """A bare comet client: connect, then recv/send/close against the connection key."""

    def __init__(self, emu: Emulator, **params: Any) -> None:
        self.emu = emu
        self.base = emu.url + "/comet/"
        self.params = {"key": emu.root_key, **params}
        query = {"format": "json", "v": "3", "heartbeats": "true", **self.params}
        r = requests.get(self.base + "connect", params=query, timeout=10)
        self.status = r.status_code
        self.first: list[dict[str, Any]] = json.loads(r.text) if r.text else []
        self.key: str | None = None
        if self.first and self.first[0]["action"] == 4:
            self.key = self.first[0]["connectionDetails"]["connectionKey"]
        self.backlog: list[dict[str, Any]] = []
        self.msg_serial = 0

    @property
    def connection_id(self) -> str:
        return str(self.first[0]["connectionId"])

    def recv(self, timeout: float = 10) -> requests.Response:
        return requests.get(f"{self.base}{self.key}/recv", params=self.params, timeout=timeout)

    def send(self, *pms: dict[str, Any], raw: str | None = None) -> requests.Response:
        body = raw if raw is not None else json.dumps(list(pms))
        return requests.post(
            f"{self.base}{self.key}/send",
            params=self.params,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

    def expect(self, action: int, timeout: float = 10, **match: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for pm in self.backlog:
                if pm.get("action") == action and all(pm.get(k) == v for k, v in match.items()):
                    self.backlog.remove(pm)
                    return pm
            r = self.recv()
            if r.status_code == 200:
                self.backlog += json.loads(r.text)
            else:
                assert r.status_code == 204, r.text
            return None

        return dict(eventually(find, timeout))

    def message_named(self, name: str) -> dict[str, Any]:
        """The first message called ``name`` (others, such as echoes, are skipped)."""

        def find() -> dict[str, Any] | None:
            for pm in self.backlog:
                for message in pm.get("messages") or []:
                    if pm.get("action") == 15 and message.get("name") == name:
                        self.backlog.remove(pm)
                        return dict(message)
            r = self.recv()
            if r.status_code == 200:
                self.backlog += json.loads(r.text)
            return None

        return dict(eventually(find, 10))

    def publish(self, channel: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        serial = self.msg_serial
        self.msg_serial += 1
        self.send({"action": 15, "channel": channel, "msgSerial": serial, "messages": messages})
        return self.expect(1, msgSerial=serial)


def _ws(emu: Emulator, fmt: str, channel: str) -> RT:
    client = RT(emu, fmt, key=emu.root_key)
    client.connected()
    client.attach(channel)
    return client


def test_connect_attach_publish_receive(comet_emulator: Emulator) -> None:
    emu = comet_emulator
    comet = Comet(emu)
    assert comet.status == 200 and comet.first[0]["action"] == 4 and comet.key
    peers = {fmt: _ws(emu, fmt, "comet-chat") for fmt in ("json", "msgpack")}
    comet.send({"action": 10, "channel": "comet-chat"})
    assert comet.expect(11, channel="comet-chat")["flags"] & (1 << 18)  # SUBSCRIBE granted
    ack = comet.publish("comet-chat", [{"name": "from-comet", "data": {"x": 1}}])
    assert ack["count"] == 1
    for fmt, peer in peers.items():
        got = peer.expect(15, channel="comet-chat")
        assert got["messages"][0]["name"] == "from-comet", fmt
        binary = (
            {"data": b"\x00\x01"} if fmt == "msgpack" else {"data": "AAE=", "encoding": "base64"}
        )
        peer.publish("comet-chat", [{"name": f"from-{fmt}", **binary}])
        message = comet.message_named(f"from-{fmt}")
        assert (message["data"], message["encoding"]) == ("AAE=", "base64")  # JSON form
        peer.close()


def test_idle_recv_answers_204_then_heartbeats_flow(comet_emulator: Emulator) -> None:
    comet = Comet(comet_emulator)
    r = comet.recv()
    assert r.status_code in (200, 204)
    if r.status_code == 200:  # only heartbeats may have been queued
        assert {pm["action"] for pm in json.loads(r.text)} <= {0}


def test_heartbeat_ping_echoed(comet_emulator: Emulator) -> None:
    comet = Comet(comet_emulator)
    comet.send({"action": 0, "id": "ping-1"})
    assert comet.expect(0, id="ping-1")


def test_close_then_key_unknown(comet_emulator: Emulator) -> None:
    comet = Comet(comet_emulator)
    r = requests.get(f"{comet.base}{comet.key}/close", params=comet.params, timeout=10)
    assert r.status_code == 204
    comet.expect(8)  # CLOSED
    after = comet.recv()
    assert after.status_code == 400 and after.json()["error"]["code"] == 80008
    assert comet.connection_id not in comet_emulator.connection_ids(active_only=False)


def test_bad_credentials_refused_with_status(comet_emulator: Emulator) -> None:
    name = comet_emulator.root_key.split(":")[0]
    bad = Comet(comet_emulator, key=f"{name}:wrong")
    assert bad.status == 401 and bad.key is None
    assert bad.first[0]["action"] == 9 and bad.first[0]["error"]["code"] == 40101


def test_follow_up_requests_need_the_connections_credentials(comet_emulator: Emulator) -> None:
    """The connection key alone drives nothing: recv/send/close/disconnect carry the
    client's credentials, valid and of the connection's app, as ably-js sends them."""
    comet = Comet(comet_emulator)
    other = comet_emulator.create_app({"keys": [{}]})
    try:
        other_key = str(other["keys"][0]["keyStr"])
        name = comet_emulator.root_key.split(":")[0]
        refusals = [({}, 40101), ({"key": other_key}, 40101), ({"key": f"{name}:wrong"}, 40101)]
        for action in ("recv", "send", "close", "disconnect"):
            for params, code in refusals:
                r = requests.post(f"{comet.base}{comet.key}/{action}", params=params, timeout=10)
                assert (r.status_code, r.json()["error"]["code"]) == (401, code), (action, params)
    finally:
        comet_emulator.delete_app(other["appId"])
    # A token of the same app (as after a token renewal) is as good as the key.
    token = requests.post(
        f"{comet_emulator.url}/keys/{name}/requestToken",
        json={},
        auth=tuple(comet_emulator.root_key.split(":", 1)),  # type: ignore[arg-type]
        timeout=10,
    ).json()["token"]
    comet.params = {"access_token": token}
    assert comet.send({"action": 0, "id": "still-mine"}).status_code == 204
    assert comet.expect(0, id="still-mine")


def test_disconnect_then_resume(comet_emulator: Emulator) -> None:
    emu = comet_emulator
    comet = Comet(emu)
    comet.send({"action": 10, "channel": "comet-resume"})
    comet.expect(11)
    r = requests.get(f"{comet.base}{comet.key}/disconnect", params=comet.params, timeout=10)
    assert r.status_code == 204
    publisher = _ws(emu, "msgpack", "comet-resume")
    publisher.publish("comet-resume", [{"name": "while-away"}])
    again = Comet(emu, resume=comet.key)
    assert again.connection_id == comet.connection_id and "error" not in again.first[0]
    again.send({"action": 10, "channel": "comet-resume"})
    assert again.expect(11, channel="comet-resume")
    publisher.close()


def test_drop_fault_cuts_the_pending_recv(comet_emulator: Emulator) -> None:
    emu = comet_emulator
    comet = Comet(emu)
    assert eventually(lambda: comet.connection_id in emu.connection_ids())

    outcome: dict[str, Any] = {}

    def poll() -> None:
        try:
            outcome["status"] = comet.recv(timeout=20).status_code
        except requests.ConnectionError as exc:
            outcome["error"] = exc

    comet.recv()  # drain CONNECTED-time heartbeats
    thread = threading.Thread(target=poll)
    thread.start()
    eventually(lambda: emu.call(lambda: emu.runtime.hub.comet[comet.key].poll is not None))
    assert emu.faults.drop_connections(connection_id=comet.connection_id) == 1
    thread.join(20)
    assert "error" in outcome, outcome
    assert eventually(lambda: comet.connection_id not in emu.connection_ids())


def test_disconnect_fault_arrives_through_recv(comet_emulator: Emulator) -> None:
    emu = comet_emulator
    comet = Comet(emu)
    assert emu.faults.disconnect(connection_id=comet.connection_id, code=80003) == 1
    assert comet.expect(6)["error"]["code"] == 80003


def test_unpolled_transport_is_lost(comet_emulator: Emulator) -> None:
    emu = comet_emulator
    comet = Comet(emu)
    assert comet.connection_id in emu.connection_ids()
    assert eventually(lambda: comet.connection_id not in emu.connection_ids(), timeout=15)
    assert comet.recv().status_code == 400


def test_malformed_send_is_an_error(comet_emulator: Emulator) -> None:
    comet = Comet(comet_emulator)
    assert comet.send(raw="{not json").status_code == 204
    assert comet.expect(9)["error"]["code"] == 40001
    comet2 = Comet(comet_emulator)
    comet2.send({"no": "action"})
    assert comet2.expect(9)["error"]["code"] == 40000


def test_newer_recv_replaces_older() -> None:
    """A client polls once at a time: a newer recv answers the older one empty at once."""
    with Emulator(config=EmulatorConfig(comet_poll_ms=20_000)) as emu:
        comet = Comet(emu)
        results: dict[str, requests.Response] = {}

        def poll(name: str) -> None:
            results[name] = comet.recv(timeout=30)

        def waiting() -> bool:
            session = emu.runtime.hub.comet[comet.key]
            return bool(emu.call(lambda: session.poll is not None))

        older = threading.Thread(target=poll, args=("older",))
        older.start()
        eventually(waiting)
        newer = threading.Thread(target=poll, args=("newer",))
        newer.start()
        older.join(10)  # far sooner than the 20 s poll
        assert results["older"].status_code == 204
        eventually(waiting)
        comet.send({"action": 0, "id": "after"})
        newer.join(10)
        assert [pm.get("id") for pm in json.loads(results["newer"].text)] == ["after"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_presence_between_comet_and_websocket(comet_emulator: Emulator, fmt: str) -> None:
    emu = comet_emulator
    channel = f"comet-presence-{fmt}"
    comet = Comet(emu, clientId="comet-user")
    comet.send({"action": 10, "channel": channel})
    comet.expect(11)
    peer: RT = _ws(emu, fmt, channel)
    comet.send(
        {
            "action": 14,
            "channel": channel,
            "msgSerial": 0,
            "presence": [{"action": 2, "data": "hi"}],
        }
    )
    comet.expect(1, msgSerial=0)
    seen = peer.expect(14, channel=channel)
    assert seen["presence"][0]["clientId"] == "comet-user" and seen["presence"][0]["action"] == 2
    peer.close()
