"""Error codes and statuses as Ably gives them, where ably-js's own suite tells the difference."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from ably_bridge.emulator import Emulator

from .conftest import RT, b64, basic, rest_post

AUTH, ACK, NACK = 17, 1, 2


def _token(emu: Emulator, key: str, capability: dict[str, Any], client_id: str = "me") -> str:
    body = {"capability": json.dumps(capability), "clientId": client_id}
    r = rest_post(emu, f"/keys/{key.split(':')[0]}/requestToken", key, body)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_reauth_upgrade_grants_publish(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(fmt, access_token=_token(emulator, root_key, {"room": ["subscribe"]}))
    rt.connected()
    rt.attach("room")
    denied = rt.publish("room", [{"data": "x"}])
    assert denied["action"] == NACK and denied["error"]["code"] == 40160  # capability first
    upgraded = _token(emulator, root_key, {"room": ["subscribe", "publish"]})
    rt.send({"action": AUTH, "auth": {"accessToken": upgraded}})
    rt.expect(4)
    assert rt.publish("room", [{"data": "y"}])["action"] == ACK


def test_reauth_downgrade_refuses_publish_with_40160(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(
        fmt, access_token=_token(emulator, root_key, {"room": ["subscribe", "publish"]})
    )
    rt.connected()
    rt.attach("room")
    assert rt.publish("room", [{"data": "x"}])["action"] == ACK
    rt.send(
        {
            "action": AUTH,
            "auth": {"accessToken": _token(emulator, root_key, {"room": ["subscribe"]})},
        }
    )
    rt.expect(4)
    denied = rt.publish("room", [{"data": "y"}])
    assert denied["action"] == NACK and denied["error"]["code"] == 40160


def test_mode_not_requested_is_40165(
    root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key)
    rt.connected()
    rt.attach("room", flags=1 << 18)  # SUBSCRIBE only, although the key may publish
    assert rt.publish("room", [{"data": "x"}])["error"]["code"] == 40165


def test_recover_with_a_key_never_issued_is_80018(
    root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key, recover="_____!ablyjs_test_fake-key____")
    connected = rt.connected()
    assert connected["error"]["code"] == 80018 and connected["connectionId"]


def test_unknown_app_key_is_40101(
    emulator: Emulator, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(fmt, key="this.is:wrong")
    error = rt.expect(9)
    assert error["error"]["code"] == 40101 and error["error"]["statusCode"] == 401
    r = requests.get(emulator.url + "/channels/x/messages", auth=basic("this.is:wrong"), timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == 40101


@pytest.mark.parametrize(
    "capability", [{"channel0": ["publish_"]}, {"channel0": ["*", "publish"]}, {"channel0": []}]
)
def test_invalid_capability_is_400(emulator: Emulator, root_key: str, capability: Any) -> None:
    r = rest_post(
        emulator,
        f"/keys/{root_key.split(':')[0]}/requestToken",
        root_key,
        {"capability": json.dumps(capability)},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == 40000


def test_known_path_other_method_is_404(emulator: Emulator, root_key: str) -> None:
    r = requests.get(
        f"{emulator.url}/keys/{root_key.split(':')[0]}/requestToken",
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == 40400
    token = _token(emulator, root_key, {"*": ["*"]})
    r = requests.put(
        emulator.url + "/channels/x/messages",
        headers={"Authorization": f"Bearer {b64(token)}"},
        timeout=5,
    )
    assert r.status_code == 404 and r.headers["X-Ably-Errorcode"] == "40400"
