"""Message annotations and summaries: REST and realtime, JSON and msgpack (RSAN, RTAN, TM2u)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from ably_bridge.emulator import Emulator
from ably_bridge.emulator.actions import (
    MODE_ANNOTATION_PUBLISH,
    MODE_ANNOTATION_SUBSCRIBE,
    MODE_PUBLISH,
    MODE_SUBSCRIBE,
)
from ably_bridge.emulator.message_annotations import summarise

from .conftest import RT, basic, rest_call, rest_post

MSGPACK = "application/x-msgpack"
ANNOTATION = 21


def _message(emu: Emulator, key: str, channel: str) -> str:
    body = {"name": "n", "data": "hello"}
    return str(rest_post(emu, f"/channels/{channel}/messages", key, body).json()["serials"][0])


def test_realtime_annotation_reaches_annotation_subscribers_then_the_summary(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    ch = f"mutable:ann-rt-{fmt}"
    watcher = rt_factory(fmt, key=root_key)
    watcher.connected()
    watcher.attach(ch, flags=MODE_SUBSCRIBE | MODE_ANNOTATION_SUBSCRIBE)
    plain = rt_factory(fmt, key=root_key)  # subscribe mode only: summaries, no annotations
    plain.connected()
    plain.attach(ch, flags=MODE_SUBSCRIBE)
    pub = rt_factory(fmt, key=root_key, clientId="alice")
    pub.connected()
    pub.attach(ch, flags=MODE_PUBLISH | MODE_ANNOTATION_PUBLISH)
    serial = pub.publish(ch, [{"name": "m", "data": "x"}])["res"][0]["serials"][0]
    watcher.expect(15, channel=ch)
    plain.expect(15, channel=ch)

    pub.send(
        {
            "action": ANNOTATION,
            "channel": ch,
            "msgSerial": 1,
            "annotations": [
                {"type": "reaction:distinct.v1", "name": "+1", "messageSerial": serial}
            ],
        }
    )
    assert pub.expect_any((1, 2), msgSerial=1)["action"] == 1  # ACK (RTAN1d)
    got = watcher.expect(ANNOTATION, channel=ch)
    (annotation,) = got["annotations"]
    assert annotation["action"] == 0 and annotation["messageSerial"] == serial
    assert (annotation["type"], annotation["name"], annotation["clientId"]) == (
        "reaction:distinct.v1",
        "+1",
        "alice",
    )
    assert annotation["serial"] > serial and got["channelSerial"] == annotation["serial"]
    summary = watcher.expect(15, channel=ch)
    (message,) = summary["messages"]
    assert (message["action"], message["serial"]) == (4, serial)
    expected = {
        "reaction:distinct.v1": {"+1": {"total": 1, "clientIds": ["alice"], "clipped": False}}
    }
    assert message["annotations"]["summary"] == expected
    assert summary["channelSerial"] > annotation["serial"]
    assert plain.expect(15, channel=ch)["messages"][0]["annotations"]["summary"] == expected
    assert not [pm for pm in plain.backlog if pm.get("action") == ANNOTATION]
    # The stored message carries the summary (history and GET by serial).
    _, latest, _ = rest_call(
        emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt
    )
    assert latest["annotations"]["summary"] == expected and latest["data"] == "x"


def test_realtime_annotation_without_the_mode_is_refused(
    emulator: Emulator, root_key: str, rt_factory: Callable[..., RT], fmt: str
) -> None:
    ch = f"mutable:ann-mode-{fmt}"
    serial = _message(emulator, root_key, ch)
    pub = rt_factory(fmt, key=root_key, clientId="bob")
    pub.connected()
    pub.attach(ch, flags=MODE_PUBLISH)
    items = [{"type": "reaction:flag.v1", "messageSerial": serial}]
    pub.send({"action": ANNOTATION, "channel": ch, "msgSerial": 0, "annotations": items})
    nack = pub.expect_any((1, 2), msgSerial=0)
    assert nack["action"] == 2 and nack["error"]["code"] == 40165


def test_rest_publish_and_paginated_get(emulator: Emulator, root_key: str, fmt: str) -> None:
    ch = f"mutable:ann-rest-{fmt}"
    serial = _message(emulator, root_key, ch)
    path = f"/channels/{ch}/messages/{serial}/annotations"
    names = ["a", "b", "c"]
    for name in names:
        body = [{"action": 0, "type": "emoji:multiple.v1", "name": name, "clientId": "carol"}]
        status, _, _ = rest_call(emulator, root_key, "POST", path, body, fmt)
        assert status == 201
    status, page, headers = rest_call(emulator, root_key, "GET", path + "?limit=2", None, fmt)
    assert status == 200 and [a["name"] for a in page] == ["a", "b"]
    assert all(a["messageSerial"] == serial and a["clientId"] == "carol" for a in page)
    assert page[0]["serial"] < page[1]["serial"]
    next_link = [v for k, v in headers.items() if k == "Link" and 'rel="next"' in v]
    assert next_link, headers
    status, rest, _ = rest_call(emulator, root_key, "GET", path + "?limit=2&cursor=2", None, fmt)
    assert [a["name"] for a in rest] == ["c"]
    _, latest, _ = rest_call(
        emulator, root_key, "GET", f"/channels/{ch}/messages/{serial}", None, fmt
    )
    summary = latest["annotations"]["summary"]["emoji:multiple.v1"]
    assert summary["a"] == {
        "total": 1,
        "clientIds": {"carol": 1},
        "totalUnidentified": 0,
        "totalClientIds": 1,
        "clipped": False,
    }


def test_rest_republish_with_the_same_id_is_stored_once(emulator: Emulator, root_key: str) -> None:
    ch = "mutable:ann-idempotent"
    serial = _message(emulator, root_key, ch)
    path = f"/channels/{ch}/messages/{serial}/annotations"
    body = {"id": "fixed:0", "type": "count:total.v1"}
    for _ in range(2):
        assert rest_post(emulator, path, root_key, body).status_code == 201
    got = requests.get(emulator.url + path, auth=basic(root_key), timeout=5).json()
    assert [a["id"] for a in got] == ["fixed:0"]


@pytest.mark.parametrize(
    ("channel", "body", "code", "status"),
    [
        ("plain", {"type": "count:total.v1"}, 93002, 400),  # no mutableMessages rule
        ("mutable:x", {"type": "count:sum.v1"}, 40003, 400),  # unknown summary method
        ("mutable:x", {"type": "nonamespace"}, 40003, 400),
        ("mutable:x", {"type": "r:flag.v1"}, 40003, 400),  # flag.v1 needs a clientId
        ("mutable:x", {"type": "count:total.v1", "count": "2"}, 40003, 400),
        ("mutable:x", {"type": "count:total.v1", "action": 7}, 40003, 400),
        ("mutable:x", {"type": "r:distinct.v1", "clientId": "c", "name": ["x"]}, 40003, 400),
    ],
)
def test_rest_refusals(
    emulator: Emulator, root_key: str, channel: str, body: dict[str, Any], code: int, status: int
) -> None:
    serial = _message(emulator, root_key, channel)
    r = rest_post(emulator, f"/channels/{channel}/messages/{serial}/annotations", root_key, body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_annotations_of_an_unknown_message_are_404(emulator: Emulator, root_key: str) -> None:
    path = "/channels/mutable:none/messages/0000000000000099/annotations"
    r = rest_post(emulator, path, root_key, {"type": "count:total.v1"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, 40400)
    r = requests.get(emulator.url + path, auth=basic(root_key), timeout=5)
    assert r.status_code == 404


def test_a_key_without_annotation_publish_is_refused(
    emulator: Emulator, app: dict[str, Any], root_key: str
) -> None:
    serial = _message(emulator, root_key, "mutable:caps")
    subscribe_only = str(app["keys"][3]["keyStr"])  # {"*": ["subscribe"]}
    r = rest_post(
        emulator,
        f"/channels/mutable:caps/messages/{serial}/annotations",
        subscribe_only,
        {"type": "count:total.v1"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (401, 40160)


def _a(action: int, atype: str, client: str | None, name: str = "", count: int = 1) -> Any:
    out: dict[str, Any] = {"action": action, "type": atype, "name": name, "count": count}
    if client is not None:
        out["clientId"] = client
    return out


def test_summaries_fold_creates_and_deletes_per_method() -> None:
    t, f, d, u, m = (f"ns:{x}.v1" for x in ("total", "flag", "distinct", "unique", "multiple"))
    got = summarise(
        [
            _a(0, t, None),
            _a(0, t, "x"),
            _a(1, t, "x"),
            _a(0, f, "x"),
            _a(0, f, "y"),
            _a(0, f, "x"),
            _a(1, f, "y"),
            _a(0, d, "x", "up"),
            _a(0, d, "x", "down"),
            _a(0, d, "y", "up"),
            _a(1, d, "x", "up"),
            _a(0, u, "x", "up"),
            _a(0, u, "y", "up"),
            _a(0, u, "x", "down"),  # x moves from "up" to "down"
            _a(0, m, "x", "up", 2),
            _a(0, m, "x", "up", 3),
            _a(0, m, None, "up", 4),
            _a(0, m, "y", "down"),
            _a(1, m, "y", "down"),
        ]
    )

    def listed(*clients: str) -> dict[str, Any]:
        return {"total": len(clients), "clientIds": list(clients), "clipped": False}

    assert got[t] == {"total": 1}
    assert got[f] == listed("x")
    assert got[d] == {"up": listed("y"), "down": listed("x")}
    assert got[u] == {"up": listed("y"), "down": listed("x")}
    assert got[m] == {
        "up": {
            "total": 9,
            "clientIds": {"x": 5},
            "totalUnidentified": 4,
            "totalClientIds": 1,
            "clipped": False,
        }
    }
