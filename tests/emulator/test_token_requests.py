"""A token asking for a token gets no more than it holds (issue 17.4).

``POST /keys/<key>/requestToken`` with Bearer auth: the capability must lie
inside the parent token's (a wider one is refused with 40160, never narrowed)
and the new token ends no later than its parent. Key-authenticated requests
keep narrowing to the key's capability.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from ably_bridge.emulator import Emulator

from .conftest import b64, rest_post


def _request(
    emu: Emulator, key_name: str, body: dict[str, Any], token: str | None = None, key: str = ""
) -> requests.Response:
    url = f"{emu.url}/keys/{key_name}/requestToken"
    if token is not None:
        headers = {"Authorization": f"Bearer {b64(token)}"}
        return requests.post(url, json=body, headers=headers, timeout=5)
    return rest_post(emu, f"/keys/{key_name}/requestToken", key, body)


def _parent(emu: Emulator, key: str, capability: dict[str, Any], ttl: int) -> dict[str, Any]:
    r = _request(
        emu, key.split(":")[0], {"capability": json.dumps(capability), "ttl": ttl}, key=key
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_token_cannot_extend_its_own_lifetime(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    name = emu.root_key.split(":")[0]
    parent = _parent(emu, emu.root_key, {"*": ["*"]}, 3000)
    longer = _request(emu, name, {"ttl": 86_400_000}, parent["token"])
    assert longer.status_code == 400 and longer.json()["error"]["code"] == 40003
    default = _request(emu, name, {}, parent["token"])
    assert default.status_code == 200
    assert default.json()["expires"] <= parent["expires"]
    shorter = _request(emu, name, {"ttl": 1000}, parent["token"]).json()
    assert shorter["expires"] <= parent["expires"]
    clock.advance(4)
    child = default.json()["token"]
    r = requests.get(
        emu.url + "/channels/a/messages",
        headers={"Authorization": f"Bearer {b64(child)}"},
        timeout=5,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == 40142
    after = _request(emu, name, {}, parent["token"])
    assert after.json()["error"]["code"] == 40142


def test_wider_capability_refused_not_narrowed(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][0]
    parent = _parent(emulator, key["keyStr"], {"room": ["subscribe", "publish"]}, 60_000)
    for wider in (
        {"*": ["*"]},
        {"room": ["*"]},
        {"room": ["subscribe", "presence"]},
        {"room:*": ["subscribe"]},
        {"other": ["subscribe"]},
        {"[*]*": ["subscribe"]},
    ):
        r = _request(emulator, key["keyName"], {"capability": json.dumps(wider)}, parent["token"])
        assert r.status_code == 401, (wider, r.text)
        assert r.json()["error"]["code"] == 40160
    same = _request(emulator, key["keyName"], {}, parent["token"]).json()
    assert json.loads(same["capability"]) == {"room": ["publish", "subscribe"]}
    sub = {"capability": json.dumps({"room": ["subscribe"]})}
    narrower = _request(emulator, key["keyName"], sub, parent["token"]).json()
    assert json.loads(narrower["capability"]) == {"room": ["subscribe"]}


def test_wildcard_parent_covers_specific_children(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][0]
    parent = _parent(emulator, key["keyStr"], {"chat:*": ["subscribe"]}, 60_000)
    body = {"capability": json.dumps({"chat:lobby": ["subscribe"]})}
    ok = _request(emulator, key["keyName"], body, parent["token"])
    assert ok.status_code == 200 and json.loads(ok.json()["capability"]) == {
        "chat:lobby": ["subscribe"]
    }


def test_key_requests_still_narrow_to_the_key(emulator: Emulator, app: dict[str, Any]) -> None:
    key = app["keys"][3]  # {"*":["subscribe"]}
    body = {"capability": json.dumps({"room": ["subscribe", "publish"]})}
    r = _request(emulator, key["keyName"], body, key=key["keyStr"])
    assert r.status_code == 200 and json.loads(r.json()["capability"]) == {"room": ["subscribe"]}


def test_token_of_another_key_cannot_request(emulator: Emulator, app: dict[str, Any]) -> None:
    parent = _parent(emulator, app["keys"][0]["keyStr"], {"*": ["*"]}, 60_000)
    r = _request(emulator, app["keys"][4]["keyName"], {}, parent["token"])
    assert r.status_code == 401 and r.json()["error"]["code"] == 40101
