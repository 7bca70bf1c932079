"""Input outside JSON's data model gets a clear 4xx and is never stored (issue 17.9).

msgpack extension types (timestamps too), non-string map keys, NaN and
infinities, and nesting past ``codec.MAX_DEPTH`` are refused with 40001 on REST
(HTTP 400) and with an ERROR frame on realtime; nothing already stored can
come back out as invalid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
import requests

from ably_bridge.emulator import Emulator, codec

from .conftest import RT, basic, rest_get

MSGPACK = "application/x-msgpack"


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON reply")

    return json.loads(text, parse_constant=refuse)


MSGPACK_BODIES = {
    "ext": msgpack.packb({"name": "e", "data": msgpack.ExtType(42, b"\x00\x01")}),
    "timestamp": msgpack.packb({"name": "t", "data": msgpack.Timestamp(1, 2)}),
    "ext_in_extras": msgpack.packb({"data": "x", "extras": {"h": [msgpack.ExtType(5, b"")]}}),
    "nan": msgpack.packb({"name": "n", "data": float("nan")}),
    "inf_in_extras": msgpack.packb({"data": "x", "extras": {"v": float("-inf")}}),
    "int_key": msgpack.packb({"data": {1: "x"}}, strict_types=False),
    "bin_key": msgpack.packb({b"data": "x"}),
}
JSON_BODIES = {
    "nan": b'{"name": "n", "data": NaN}',
    "infinity": b'[{"data": "x", "extras": {"v": -Infinity}}]',
    "deep": ("[" * 200 + "]" * 200).encode(),
    "not_utf8": b'{"data": "\xff\xfe"}',
}


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


MSGPACK_BODIES["deep"] = msgpack.packb({"data": "x", "extras": _nest(codec.MAX_DEPTH + 5)})


@pytest.mark.parametrize("case", sorted(MSGPACK_BODIES))
def test_rest_msgpack_outside_data_model(emulator: Emulator, root_key: str, case: str) -> None:
    r = requests.post(
        emulator.url + "/channels/wire/messages",
        data=MSGPACK_BODIES[case],
        headers={"Content-Type": MSGPACK},
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 40001
    assert rest_get(emulator, "/channels/wire/messages", root_key).json() == []


@pytest.mark.parametrize("case", sorted(JSON_BODIES))
def test_rest_json_outside_data_model(emulator: Emulator, root_key: str, case: str) -> None:
    r = requests.post(
        emulator.url + "/channels/wire/messages",
        data=JSON_BODIES[case],
        headers={"Content-Type": "application/json"},
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == 40001
    history = rest_get(emulator, "/channels/wire/messages", root_key)
    assert _strict_json(history.text) == []


def test_msgpack_ext_on_other_routes(emulator: Emulator, root_key: str) -> None:
    ext = msgpack.packb({"channels": ["a"], "messages": [{"data": msgpack.ExtType(1, b"")}]})
    for path in ("/messages", "/stats", f"/keys/{root_key.split(':')[0]}/requestToken", "/apps"):
        r = requests.post(
            emulator.url + path,
            data=ext,
            headers={"Content-Type": MSGPACK},
            auth=basic(root_key),
            timeout=5,
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == 40001, (path, r.text)


def test_finite_floats_round_trip(emulator: Emulator, root_key: str) -> None:
    body = msgpack.packb({"name": "f", "data": "x", "extras": {"headers": {"v": 1.5}}})
    r = requests.post(
        emulator.url + "/channels/floats/messages",
        data=body,
        headers={"Content-Type": MSGPACK},
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 201
    got = _strict_json(rest_get(emulator, "/channels/floats/messages", root_key).text)
    assert got[0]["extras"] == {"headers": {"v": 1.5}}


@pytest.mark.parametrize("case", ["ext", "timestamp", "nan", "int_key"])
def test_realtime_msgpack_outside_data_model(emulator: Emulator, case: str) -> None:
    bystander = RT(emulator, "json", key=emulator.root_key)
    bystander.connected()
    bystander.attach("wire-rt")
    client = RT(emulator, "msgpack", key=emulator.root_key)
    client.connected()
    client.attach("wire-rt")
    # The frame embeds the raw message bytes after a hand-written header.
    head = msgpack.packb({"action": 15, "channel": "wire-rt", "msgSerial": 0})
    frame = bytes([head[0] + 1]) + head[1:] + msgpack.packb("messages") + b"\x91"
    client.ws.send_binary(frame + MSGPACK_BODIES[case])
    error = client.expect(9)
    assert error["error"]["code"] == 40001
    assert client.closed_by_server()
    # The bystander still works and never saw the refused message.
    bystander.publish("wire-rt", [{"name": "ok", "data": "fine"}])
    got = bystander.expect(15, channel="wire-rt")
    assert [m["name"] for m in got["messages"]] == ["ok"]
    bystander.close()


def test_realtime_json_nan_refused(emulator: Emulator) -> None:
    client = RT(emulator, "json", key=emulator.root_key)
    client.connected()
    client.ws.send('{"action": 15, "channel": "n", "msgSerial": 0, "messages": [{"data": NaN}]}')
    assert client.expect(9)["error"]["code"] == 40001


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"name": "\\ud800", "data": "x"}', 40001),  # lone surrogate: not UTF-8 encodable
        (b'{"data": {"k": "\\udfff"}}', 40001),
        (b'{"data": 1180591620717411303424}', 40001),  # beyond msgpack's 64 bits
        (b'{"data": "x", "extras": 1.5}', 40032),
        (b'{"data": "x", "extras": "headers"}', 40032),
        (b'{"id": ["a"], "data": "x"}', 40031),
        (b'{"data": "x", "encoding": {"a": 1}}', 40013),
        (b'{"data": "x", "connectionKey": 7}', 40006),
    ],
)
def test_message_fields_refused(emulator: Emulator, root_key: str, body: bytes, code: int) -> None:
    r = requests.post(
        emulator.url + "/channels/fields/messages",
        data=body,
        headers={"Content-Type": "application/json", "Accept": MSGPACK},
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 400 and msgpack.unpackb(r.content)["error"]["code"] == code
    assert rest_get(emulator, "/channels/fields/messages", root_key).json() == []


def test_surrogate_pairs_are_fine(emulator: Emulator, root_key: str) -> None:
    body = b'{"name": "\\ud83d\\ude00", "data": "x"}'
    r = requests.post(
        emulator.url + "/channels/emoji/messages",
        data=body,
        headers={"Content-Type": "application/json"},
        auth=basic(root_key),
        timeout=5,
    )
    assert r.status_code == 201
    got = rest_get(emulator, "/channels/emoji/messages", root_key, headers={"Accept": MSGPACK})
    assert msgpack.unpackb(got.content)[0]["name"] == "\U0001f600"


def test_error_header_never_carries_control_characters(emulator: Emulator, root_key: str) -> None:
    r = requests.post(
        emulator.url + "/keys/a%01b%0d%0aX-Evil:%201/requestToken",
        json={},
        auth=basic(root_key),
        timeout=5,
    )
    assert 400 <= r.status_code < 500
    assert "X-Evil" not in r.headers
    assert all(" " <= c < "\x7f" for c in r.headers["X-Ably-Errormessage"])


def test_oversized_body_is_an_ably_error(emulator: Emulator, root_key: str) -> None:
    r = requests.post(
        emulator.url + "/channels/big/messages",
        data=b'"' + b"x" * (9 * 1024 * 1024) + b'"',
        headers={"Content-Type": "application/json"},
        auth=basic(root_key),
        timeout=30,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == 40009
