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


ATTACH_RESUME = 1 << 5
MESSAGE, SYNC = 15, 16


def test_attach_resume_gets_no_rewind_backlog(
    root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    pub.publish("rewound", [{"name": "old"}])
    fresh = rt_factory(fmt, key=root_key)
    fresh.connected()
    fresh.attach("rewound", params={"rewind": "1"})
    assert fresh.expect(MESSAGE, channel="rewound")["messages"][0]["name"] == "old"
    resumed = rt_factory(fmt, key=root_key)
    resumed.connected()
    attached = resumed.attach("rewound", params={"rewind": "1"}, flags=ATTACH_RESUME)
    assert not attached["flags"] & (1 << 1)  # no HAS_BACKLOG
    resumed.send({"action": 0, "id": "marker"})
    resumed.expect(0, id="marker")
    assert not [pm for pm in resumed.backlog if pm.get("action") == MESSAGE]


def test_replay_on_reattach_restarts_the_delta_chain(
    root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    pub = rt_factory(fmt, key=root_key)
    pub.connected()
    serials = [
        pub.publish("deltas", [{"name": str(i), "data": f"payload number {i} " * 8}])["res"][0][
            "serials"
        ][0]
        for i in range(3)
    ]
    sub = rt_factory(fmt, key=root_key)
    sub.connected()
    attached = sub.attach("deltas", params={"delta": "vcdiff"}, channelSerial=serials[0])
    assert attached["flags"] & (1 << 2)  # RESUMED
    first = sub.expect(MESSAGE, channel="deltas")["messages"][0]
    second = sub.expect(MESSAGE, channel="deltas")["messages"][0]
    assert first["name"] == "1" and "delta" not in (first.get("extras") or {})
    assert second["name"] == "2" and second["extras"]["delta"]["from"] == first["id"]


def test_client_requested_sync(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key, clientId="syncer")
    rt.connected()
    rt.attach("sync-me")
    rt.send({"action": SYNC, "channel": "sync-me"})
    empty = rt.expect(SYNC, channel="sync-me")
    assert empty["presence"] == [] and empty["channelSerial"].endswith(":")
    rt.presence("sync-me", [{"action": 2, "data": "here"}])
    rt.send({"action": SYNC, "channel": "sync-me"})
    full = rt.expect(SYNC, channel="sync-me")
    assert [m["clientId"] for m in full["presence"]] == ["syncer"]
    rt.send({"action": SYNC, "channel": "not-attached"})
    assert rt.expect(9, channel="not-attached")["error"]["code"] == 90001


def test_presence_fixtures_enter_in_history(emulator: Emulator, root_key: str) -> None:
    base = emulator.url + "/channels/persisted:presence_fixtures/presence"
    members = requests.get(base, auth=basic(root_key), timeout=5).json()
    history = requests.get(base + "/history", auth=basic(root_key), timeout=5).json()
    assert members and {m["action"] for m in members} == {1}  # PRESENT
    assert len(history) == len(members) and {m["action"] for m in history} == {2}  # ENTER
