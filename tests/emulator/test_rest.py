"""REST surface of the emulator, driven with plain ``requests``."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
import pytest
import requests

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.tokens import token_request_mac

from .conftest import app_setup, b64, basic, rest_get, rest_post

MSGPACK = "application/x-msgpack"


def test_time_json_and_msgpack(emulator: Emulator) -> None:
    (now,) = requests.get(emulator.url + "/time", timeout=5).json()
    assert isinstance(now, int) and now > 1_600_000_000_000
    r = requests.get(emulator.url + "/time", headers={"Accept": MSGPACK}, timeout=5)
    assert r.headers["Content-Type"].startswith(MSGPACK)
    assert isinstance(msgpack.unpackb(r.content)[0], int)


def test_publish_and_history_pagination(emulator: Emulator, root_key: str) -> None:
    for i in range(5):
        r = rest_post(emulator, "/channels/pag/messages", root_key, {"name": "n", "data": str(i)})
        assert r.status_code == 201
        assert r.json()["channel"] == "pag" and len(r.json()["serials"]) == 1
    r = rest_get(emulator, "/channels/pag/messages?limit=2", root_key)
    assert [m["data"] for m in r.json()] == ["4", "3"]
    assert 'rel="next"' in r.headers["Link"] and "<./messages?" in r.headers["Link"]
    seen = [m["data"] for m in r.json()]
    while "next" in r.links:
        r = rest_get(emulator, "/channels/pag/" + r.links["next"]["url"][2:], root_key)
        seen += [m["data"] for m in r.json()]
    assert seen == ["4", "3", "2", "1", "0"]
    fwd = rest_get(emulator, "/channels/pag/history?direction=forwards&limit=3", root_key).json()
    assert [m["data"] for m in fwd] == ["0", "1", "2"]
    first = fwd[0]
    assert first["id"].endswith(":0") and first["serial"] and first["timestamp"]
    until = rest_get(
        emulator, f"/channels/pag/messages?from_serial={fwd[1]['serial']}", root_key
    ).json()
    assert [m["data"] for m in until] == ["1", "0"]
    ts = fwd[2]["timestamp"]
    ranged = rest_get(emulator, f"/channels/pag/messages?start={ts}&end={ts}", root_key).json()
    assert all(m["timestamp"] == ts for m in ranged) and ranged


def test_publish_many_and_idempotent_ids(emulator: Emulator, root_key: str) -> None:
    batch = [{"id": "base:0", "data": "a"}, {"id": "base:1", "data": "b"}]
    first = rest_post(emulator, "/channels/idem/messages", root_key, batch).json()
    again = rest_post(emulator, "/channels/idem/messages", root_key, batch).json()
    assert first["serials"] == again["serials"]
    assert first["messageId"] == "base"
    history = rest_get(emulator, "/channels/idem/messages", root_key).json()
    assert [m["id"] for m in history] == ["base:1", "base:0"]
    mixed = rest_post(emulator, "/channels/idem/messages", root_key, [{"id": "x:0"}, {"data": 1}])
    assert mixed.json()["error"]["code"] == 40031


def test_msgpack_request_and_binary_transcoding(emulator: Emulator, root_key: str) -> None:
    body = msgpack.packb({"name": "bin", "data": b"\x00\xff"}, use_bin_type=True)
    r = requests.post(
        emulator.url + "/channels/bin/messages",
        data=body,
        auth=basic(root_key),
        headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
        timeout=5,
    )
    assert r.status_code == 201 and msgpack.unpackb(r.content)["serials"]
    as_json = rest_get(emulator, "/channels/bin/messages", root_key).json()[0]
    assert as_json["data"] == base64.b64encode(b"\x00\xff").decode()
    assert as_json["encoding"] == "base64"
    as_mp = rest_get(emulator, "/channels/bin/messages", root_key, headers={"Accept": MSGPACK})
    item = msgpack.unpackb(as_mp.content, raw=False)[0]
    assert item["data"] == b"\x00\xff" and "encoding" not in item


def test_error_envelope_and_headers(emulator: Emulator, root_key: str) -> None:
    r = requests.get(emulator.url + "/channels/x/messages", timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 40101
    assert r.headers["X-Ably-Errorcode"] == "40101"
    assert r.json()["error"]["href"].endswith("/40101")
    bad = requests.post(
        emulator.url + "/channels/x/messages",
        data="{not json",
        auth=basic(root_key),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 40001
    name = rest_post(emulator, "/channels/%3Abad/messages", root_key, {"data": 1})
    assert name.json()["error"]["code"] == 40010
    wrong = requests.get(emulator.url + "/time", auth=basic(root_key[:-2] + "zz"), timeout=5)
    assert wrong.status_code == 200  # /time needs no auth
    wrong = rest_get(emulator, "/channels/x/messages", root_key[:-2] + "zz")
    assert wrong.json()["error"]["code"] == 40101
    limit = rest_get(emulator, "/channels/x/messages?limit=1001", root_key)
    assert limit.json()["error"]["code"] == 40003
    assert rest_get(emulator, "/nope", root_key).json()["error"]["code"] == 40400


def test_force_nack_param(emulator: Emulator, root_key: str) -> None:
    r = rest_post(emulator, "/channels/f/messages?_forceNack=true", root_key, {"data": "x"})
    assert r.json()["error"]["code"] == 40099


def _signed_request(key: dict[str, Any], now: int, **fields: Any) -> dict[str, Any]:
    body = {"keyName": key["keyName"], "timestamp": now, "nonce": fields.pop("nonce"), **fields}
    body["mac"] = token_request_mac(
        key["value"],
        key["keyName"],
        body.get("ttl"),
        body.get("capability"),
        body.get("clientId"),
        now,
        body["nonce"],
    )
    return body


def test_signed_token_request_and_bearer(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][2]  # channel-specific capabilities
    (now,) = requests.get(emulator.url + "/time", timeout=5).json()
    path = f"{emulator.url}/keys/{key['keyName']}/requestToken"
    body = _signed_request(
        key, now, nonce="n" * 16, ttl=60_000, capability='{"channel2":["subscribe"]}', clientId="al"
    )
    r = requests.post(path, json=body, timeout=5)
    assert r.status_code == 200, r.text
    details = r.json()
    assert details["capability"] == '{"channel2":["subscribe"]}'
    assert details["clientId"] == "al" and details["expires"] - details["issued"] == 60_000
    assert requests.post(path, json=body, timeout=5).json()["error"]["code"] == 40105
    stale = _signed_request(key, now - 10 * 60_000, nonce="m" * 16)
    assert requests.post(path, json=stale, timeout=5).json()["error"]["code"] == 40104
    forged = dict(_signed_request(key, now, nonce="o" * 16), mac="AAAA")
    assert requests.post(path, json=forged, timeout=5).json()["error"]["code"] == 40101
    token = details["token"]
    for header in (f"Bearer {token}", f"Bearer {b64(token)}"):
        ok = requests.get(
            emulator.url + "/channels/channel2/presence",
            headers={"Authorization": header},
            timeout=5,
        )
        assert ok.status_code == 200, ok.text
    denied = requests.post(
        emulator.url + "/channels/channel2/messages",
        json={"data": 1},
        headers={"Authorization": f"Bearer {b64(token)}"},
        timeout=5,
    )
    assert denied.status_code == 401 and denied.json()["error"]["code"] == 40160
    by_query = requests.get(
        f"{emulator.url}/channels/channel2/presence?access_token={token}", timeout=5
    )
    assert by_query.status_code == 200


def test_unsigned_token_request_needs_key(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][0]
    path = f"/keys/{key['keyName']}/requestToken"
    assert rest_post(emulator, path, key["keyStr"], {"clientId": "bob"}).status_code == 200
    anon = requests.post(emulator.url + path, json={"clientId": "bob"}, timeout=5)
    assert anon.json()["error"]["code"] == 40101


def test_client_id_rules_on_rest_publish(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][0]
    tok = rest_post(
        emulator, f"/keys/{key['keyName']}/requestToken", key["keyStr"], {"clientId": "me"}
    )
    auth = {"Authorization": f"Bearer {b64(tok.json()['token'])}"}
    url = emulator.url + "/channels/cid/messages"
    assert requests.post(url, json={"data": 1}, headers=auth, timeout=5).status_code == 201
    bad = requests.post(url, json={"data": 1, "clientId": "you"}, headers=auth, timeout=5)
    assert bad.json()["error"]["code"] == 40012
    hist = rest_get(emulator, "/channels/cid/messages", key["keyStr"]).json()
    assert hist[0]["clientId"] == "me"
    header = {"X-Ably-ClientId": b64("basicid")}
    r = rest_post(
        emulator, "/channels/cid/messages", key["keyStr"], {"clientId": "x"}, headers=header
    )
    assert r.json()["error"]["code"] == 40012


def test_expired_token_on_rest(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    tok = rest_post(
        emu, f"/keys/{emu.root_key.split(':')[0]}/requestToken", emu.root_key, {"ttl": 1000}
    )
    auth = {"Authorization": f"Bearer {b64(tok.json()['token'])}"}
    assert requests.get(emu.url + "/channels/a/messages", headers=auth, timeout=5).ok
    clock.advance(2)
    r = requests.get(emu.url + "/channels/a/messages", headers=auth, timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == 40142
    unknown = requests.get(
        emu.url + "/channels/a/messages", headers={"Authorization": "Bearer x.y"}, timeout=5
    )
    assert unknown.json()["error"]["code"] == 40143


def test_apps_fixture_and_delete(emulator: Emulator) -> None:
    body = app_setup()["post_apps"]
    r = requests.post(emulator.url + "/apps", json=body, timeout=5)
    assert r.status_code == 201
    created = r.json()
    assert len(created["keys"]) == len(body["keys"])
    key = created["keys"][5]
    assert key["keyStr"] == f"{created['appId']}.{key['id']}:{key['value']}"
    assert key["capability"] == '{"[*]*":["*"]}'
    assert created["keys"][4]["revocableTokens"] is True
    root = created["keys"][0]["keyStr"]
    members = rest_get(emulator, "/channels/persisted:presence_fixtures/presence", root).json()
    by_client = {m["clientId"]: m for m in members}
    assert len(members) == 6 and {m["action"] for m in members} == {1}
    enc = by_client["client_encoded"]
    assert enc["encoding"] == "json/utf-8/cipher+aes-128-cbc/base64"
    assert enc["data"] == "HO4cYSP8LybPYBPZPHQOtuD53yrD3YV3NBoTEYBh4U0N1QXHbtkfsDfTspKeLQFt"
    assert by_client["client_decoded"]["encoding"] == "json"
    paged = rest_get(emulator, "/channels/persisted:presence_fixtures/presence?limit=4", root)
    assert len(paged.json()) == 4 and "next" in paged.links
    meta = rest_get(emulator, "/channels/[meta]x/messages", created["keys"][0]["keyStr"])
    assert meta.json()["error"]["code"] == 40160
    assert rest_get(emulator, "/channels/[meta]x/messages", key["keyStr"]).status_code == 200
    gone = requests.delete(f"{emulator.url}/apps/{created['appId']}", auth=basic(root), timeout=5)
    assert gone.status_code == 204
    assert rest_get(emulator, "/channels/x/messages", root).json()["error"]["code"] == 40101


def test_channel_status_and_enumeration(emulator: Emulator, root_key: str) -> None:
    for name in ("enum:a", "enum:b", "other"):
        rest_post(emulator, f"/channels/{name}/messages", root_key, {"data": 1})
    status = rest_get(emulator, "/channels/enum:a", root_key).json()
    assert status["channelId"] == "enum:a" and status["status"]["isActive"] is True
    assert status["status"]["occupancy"]["metrics"]["connections"] == 0
    v3 = {"X-Ably-Version": "6"}
    names = rest_get(emulator, "/channels?prefix=enum:", root_key, headers=v3).json()
    assert names == ["enum:a", "enum:b"]
    page = rest_get(emulator, "/channels?prefix=enum:&limit=1", root_key, headers=v3)
    assert page.json() == ["enum:a"] and "next" in page.links
    legacy = rest_get(emulator, "/channels?prefix=enum:", root_key).json()
    assert legacy[0]["status"]["isActive"] is True


def test_batch_publish_and_presence(emulator: Emulator, root_key: str) -> None:
    spec = {"channels": ["b1", "b2", ":bad"], "messages": [{"data": "x"}]}
    v3 = {"X-Ably-Version": "6"}
    r = rest_post(emulator, "/messages", root_key, spec, headers=v3)
    assert r.status_code == 201
    assert (r.json()["successCount"], r.json()["failureCount"]) == (2, 1)
    legacy = rest_post(emulator, "/messages", root_key, spec)
    assert legacy.status_code == 400 and legacy.json()["error"]["code"] == 40020
    pres = rest_get(emulator, "/presence?channels=b1,b2", root_key, headers=v3).json()
    assert pres["successCount"] == 2 and pres["results"][0]["presence"] == []


def test_stats_forms(emulator: Emulator, root_key: str) -> None:
    rest_post(emulator, "/channels/st/messages", root_key, {"data": 1})
    modern = rest_get(emulator, "/stats", root_key, headers={"X-Ably-Version": "6"}).json()
    assert modern[0]["entries"]["messages.all.all.count"] >= 1 and modern[0]["unit"] == "minute"
    fixture = [
        {"intervalId": "2020-01-01:10:05", "inbound": {"realtime": {"messages": {"count": 7}}}}
    ]
    assert rest_post(emulator, "/stats", root_key, fixture).status_code == 201
    q = "/stats?start=2020-01-01:10:00&end=2020-01-01:11:00&unit=hour"
    hour = rest_get(emulator, q, root_key, headers={"X-Ably-Version": "6"}).json()
    assert hour[0]["entries"]["messages.inbound.realtime.messages.count"] == 7
    legacy = rest_get(emulator, q, root_key).json()
    assert legacy[0]["inbound"]["realtime"]["messages"]["count"] == 7


def test_rest_fault_injection_scoped(
    emulator: Emulator, app: dict[str, Any], root_key: str
) -> None:
    emulator.faults.fail_rest(count=2, status=503, code=50300, app_id=app["appId"])
    other = rest_get(emulator, "/channels/x/messages", emulator.root_key)
    assert other.status_code == 200  # another app is not affected
    for _ in range(2):
        r = rest_get(emulator, "/channels/x/messages", root_key)
        assert r.status_code == 503 and r.headers["X-Ably-Errorcode"] == "50300"
    assert rest_get(emulator, "/channels/x/messages", root_key).status_code == 200
    admin = requests.post(
        emulator.url + "/_emulator/faults/fail_rest",
        json={"count": 1, "status": 500, "code": 50000, "path_prefix": "/time"},
        timeout=5,
    )
    assert admin.ok
    assert requests.get(emulator.url + "/time", timeout=5).status_code == 500
    assert requests.get(emulator.url + "/time", timeout=5).status_code == 200


@pytest.mark.parametrize("accept", ["application/json", MSGPACK])
def test_envelope_and_formats_on_errors(emulator: Emulator, accept: str) -> None:
    r = requests.get(emulator.url + "/channels/x/messages", headers={"Accept": accept}, timeout=5)
    body = msgpack.unpackb(r.content) if accept == MSGPACK else r.json()
    assert body["error"]["code"] == 40101
    env = requests.get(emulator.url + "/channels/x/messages?envelope=json", timeout=5)
    assert env.status_code == 200 and env.json()["statusCode"] == 401
    assert json.loads(env.text)["response"]["error"]["code"] == 40101
