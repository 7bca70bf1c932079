"""Token revocation: POST /keys/<keyName>/revokeTokens (RSA17)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from ably_bridge.emulator import Emulator
from tests.support.wait import eventually

from .conftest import RT, b64, basic, rest_post


def _token(emu: Emulator, key: str, client_id: str, **extra: Any) -> str:
    r = rest_post(
        emu, f"/keys/{key.split(':')[0]}/requestToken", key, {"clientId": client_id, **extra}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _revoke(emu: Emulator, key: str, body: Any, **kw: Any) -> requests.Response:
    return rest_post(emu, f"/keys/{key.split(':')[0]}/revokeTokens", key, body, **kw)


def _works(emu: Emulator, token: str) -> int:
    r = requests.get(
        emu.url + "/channels/x/messages",
        headers={"Authorization": f"Bearer {b64(token)}"},
        timeout=5,
    )
    return int(r.json()["error"]["code"]) if r.status_code != 200 else 0


def test_revoke_by_client_id_disconnects_its_connections(
    emulator: Emulator, app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    key = app["keys"][4]["keyStr"]  # revocableTokens
    gone, kept = _token(emulator, key, "gone"), _token(emulator, key, "kept")
    by_key = _token(emulator, key, "other", revocationKey="group-1")
    rt = rt_factory(fmt, access_token=gone)
    rt.connected()
    other = rt_factory(fmt, access_token=kept)
    other.connected()
    r = _revoke(emulator, key, {"targets": ["clientId:gone", "revocationKey:group-1", "bogus:x"]})
    assert r.status_code == 201
    body = r.json()
    assert (body["successCount"], body["failureCount"]) == (2, 1)
    assert body["results"][0]["target"] == "clientId:gone"
    assert isinstance(body["results"][0]["issuedBefore"], int)
    assert body["results"][2]["error"]["statusCode"] == 400
    assert rt.expect(6)["error"]["code"] == 40141  # DISCONNECTED
    assert _works(emulator, gone) == 40141 and _works(emulator, by_key) == 40141
    assert _works(emulator, kept) == 0
    other.send({"action": 0, "id": "still"})
    assert other.expect(0, id="still")


def test_refusals(emulator: Emulator, app: dict[str, Any]) -> None:
    plain = app["keys"][0]["keyStr"]
    r = _revoke(emulator, plain, {"targets": ["clientId:a"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == 40163
    revocable = app["keys"][4]["keyStr"]
    token = _token(emulator, revocable, "a")
    r = requests.post(
        emulator.url + f"/keys/{revocable.split(':')[0]}/revokeTokens",
        json={"targets": ["clientId:a"]},
        headers={"Authorization": f"Bearer {b64(token)}"},
        timeout=5,
    )
    assert r.json()["error"]["code"] == 40162
    r = requests.post(
        emulator.url + f"/keys/{revocable.split(':')[0]}/revokeTokens",
        json={"targets": ["clientId:a"]},
        auth=basic(plain),
        timeout=5,
    )
    assert r.json()["error"]["code"] == 40133
    assert _works(emulator, token) == 0


def test_issued_before_and_reauth_margin(fake_emulator: Any) -> None:
    emu, clock = fake_emulator
    created = emu.create_app({"keys": [{}, {"revocableTokens": True}]})
    key = created["keys"][1]["keyStr"]
    early = _token(emu, key, "c")
    clock.advance(10)
    late = _token(emu, key, "c")
    cutoff = int(clock.time_ms()) - 5000
    r = _revoke(
        emu, key, {"targets": ["clientId:c"], "issuedBefore": cutoff, "allowReauthMargin": True}
    )
    result = r.json()["results"][0]
    assert result["issuedBefore"] == cutoff and result["appliesAt"] >= clock.time_ms() + 30_000
    assert _works(emu, early) == 0  # not yet: the margin
    clock.advance(31)
    assert eventually(lambda: _works(emu, early) == 40141)
    assert _works(emu, late) == 0  # issued after issuedBefore
    emu.delete_app(created["appId"])
