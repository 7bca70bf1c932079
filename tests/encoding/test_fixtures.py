"""Every ably-common fixture about payload encoding (copies in tests/fixtures/ably-common).

* crypto-data-128/256.json: decrypt the JSON wire form and compare with the
  plain form; re-encrypt the plain form with the fixture IV and compare the
  wire form byte for byte; the same both ways for the msgpack form.
* messages-encoding.json / presence-messages-encoding.json: decode, check the
  expected type and value, re-encode for both transports.
* msgpack_test_fixtures.json: decode each msgpack ProtocolMessage, check the
  payload, re-encode and decode again.
* test-app-setup.json: the presence fixtures, including the encrypted one.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ably_bridge.encoding.crypto import ChannelCipher, get_cipher, get_default_params
from ably_bridge.protocol.actions import Action, PresenceAction
from ably_bridge.protocol.codec import decode_frame, encode_frame
from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage
from tests.conftest import ABLY_COMMON

# Parametrisation needs the folder at collection time, so use the conftest constant
# behind the ``ably_common`` fixture (checked equal below).
FIXTURES = ABLY_COMMON


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _crypto_cases() -> list[Any]:
    cases = []
    for bits in (128, 256):
        data = _load(f"crypto-data-{bits}.json")
        for index, item in enumerate(data["items"]):
            cases.append(pytest.param(bits, item, id=f"aes{bits}-{index}"))
    return cases


CRYPTO_CASES = _crypto_cases()


def test_fixture_folder_is_the_conftest_one(ably_common: Path) -> None:
    assert ably_common == FIXTURES
    assert len(_load("crypto-data-128.json")["items"]) == 4
    assert len(_load("crypto-data-256.json")["items"]) == 74
    assert len(CRYPTO_CASES) == 78


def _fixture_cipher(bits: int) -> ChannelCipher:
    data = _load(f"crypto-data-{bits}.json")
    params = get_default_params(
        {"key": data["key"], "iv": data["iv"], "algorithm": data["algorithm"], "mode": data["mode"]}
    )
    assert params.key_length == data["keylength"] == bits
    return get_cipher(params)


@pytest.mark.parametrize(("bits", "item"), CRYPTO_CASES)
def test_crypto_fixture_json_form(bits: int, item: dict[str, Any]) -> None:
    cipher = _fixture_cipher(bits)
    expected = Message.from_encoded(item["encoded"])
    assert expected.decode_error is None
    received = Message.from_encoded(item["encrypted"], cipher)
    assert received.decode_error is None
    assert received.encoding is None
    assert received.name == expected.name
    assert received.data == expected.data
    assert type(received.data) is type(expected.data)
    # Re-encrypt with the fixture IV: the JSON wire form must match byte for byte.
    assert expected.encoded(cipher).to_dict(binary=False) == item["encrypted"]


@pytest.mark.parametrize(("bits", "item"), CRYPTO_CASES)
def test_crypto_fixture_msgpack_form(bits: int, item: dict[str, Any]) -> None:
    cipher = _fixture_cipher(bits)
    packed = base64.b64decode(item["msgpack"])
    wire = msgpack.unpackb(packed, raw=False)
    assert isinstance(wire["data"], bytes)
    received = Message.from_encoded(wire, cipher)
    assert received.decode_error is None
    assert received.data == Message.from_encoded(item["encoded"]).data
    reencoded = Message.from_encoded(item["encoded"]).encoded(cipher).to_dict(binary=True)
    assert reencoded == wire
    assert reencoded["data"] == wire["data"]
    # Through a whole msgpack frame and back.
    frame = encode_frame(
        ProtocolMessage(Action.MESSAGE, messages=[Message.from_dict(wire)]), binary=True
    )
    again = decode_frame(frame, binary=True).messages[0]
    assert again.data == wire["data"]
    assert again.decoded(cipher).data == received.data


def _check_expected(data: Any, case: dict[str, Any]) -> None:
    kind = case["expectedType"]
    if kind == "binary":
        assert isinstance(data, bytes)
        assert data.hex() == case["expectedHexValue"]
    elif kind == "string":
        assert isinstance(data, str)
        assert data == case["expectedValue"]
    elif kind == "jsonObject":
        assert isinstance(data, dict)
        assert data == case["expectedValue"]
    else:
        assert kind == "jsonArray"
        assert isinstance(data, list)
        assert data == case["expectedValue"]


def _interop_cases(name: str) -> list[Any]:
    return [
        pytest.param(case, id=case["expectedType"] + str(i))
        for i, case in enumerate(_load(name)["messages"])
    ]


@pytest.mark.parametrize("case", _interop_cases("messages-encoding.json"))
def test_messages_encoding_fixture(case: dict[str, Any]) -> None:
    wire = {"name": "event", "data": case["data"], "encoding": case["encoding"]}
    message = Message.from_encoded(wire)
    assert message.decode_error is None
    _check_expected(message.data, case)
    _check_reencoding(message, case)


@pytest.mark.parametrize("case", _interop_cases("presence-messages-encoding.json"))
def test_presence_messages_encoding_fixture(case: dict[str, Any]) -> None:
    wire = {
        "action": case["action"],
        "clientId": "c",
        "data": case["data"],
        "encoding": case["encoding"],
    }
    member = PresenceMessage.from_encoded(wire)
    assert member.decode_error is None
    assert member.action == case["action"]
    assert isinstance(member.action, PresenceAction)
    _check_expected(member.data, case)
    _check_reencoding(member, case)


def _check_reencoding(item: Message | PresenceMessage, case: dict[str, Any]) -> None:
    encoded = item.encoded()
    # JSON transport: exactly the fixture's wire form.
    as_json = encoded.to_dict(binary=False)
    assert as_json["data"] == case["data"]
    assert as_json.get("encoding") == case["encoding"]
    # msgpack transport: binary travels as bin with no base64 step.
    as_msgpack = encoded.to_dict(binary=True)
    if case["expectedType"] == "binary":
        assert as_msgpack["data"] == bytes.fromhex(case["expectedHexValue"])
        assert "encoding" not in as_msgpack
    else:
        assert as_msgpack["data"] == case["data"]
        assert as_msgpack.get("encoding") == case["encoding"]
    # And through whole frames on both transports.
    if isinstance(encoded, Message):
        pm = ProtocolMessage(Action.MESSAGE, messages=[encoded])
    else:
        pm = ProtocolMessage(Action.PRESENCE, presence=[encoded])
    for binary in (True, False):
        received = decode_frame(encode_frame(pm, binary=binary))
        back = (received.messages or received.presence)[0].decoded()
        assert back.decode_error is None
        _check_expected(back.data, case)


def _msgpack_cases() -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in _load("msgpack_test_fixtures.json")]


@pytest.mark.parametrize("case", _msgpack_cases())
def test_msgpack_protocol_message_fixtures(case: dict[str, Any]) -> None:
    frame = base64.b64decode(case["msgpack"])
    pm = decode_frame(frame, binary=True)
    assert pm.msg_serial == 0
    assert len(pm.messages) == 1
    message = pm.messages[0].decoded()
    assert message.decode_error is None
    _check_msgpack_payload(message.data, case)
    # Inferred format works as well.
    assert decode_frame(frame).messages[0].decoded().data == message.data
    # Re-encode (msgpack and JSON) and decode again.
    for binary in (True, False):
        again_pm = ProtocolMessage(pm.action, msg_serial=0, messages=[message.encoded()])
        again = decode_frame(encode_frame(again_pm, binary=binary)).messages[0].decoded()
        assert again.decode_error is None
        _check_msgpack_payload(again.data, case)


def _check_msgpack_payload(data: Any, case: dict[str, Any]) -> None:
    kind = case["type"]
    if kind == "string":
        assert data == case["data"] * case["numRepeat"]
    elif kind == "binary":
        assert data == case["data"].encode() * case["numRepeat"]
    else:
        assert kind in ("jsonObject", "jsonArray")
        assert data == case["data"]


def test_test_app_presence_fixtures() -> None:
    setup = _load("test-app-setup.json")
    cipher = get_cipher(setup["cipher"])
    assert cipher.cipher_type == "aes-128-cbc"
    (channel,) = setup["post_apps"]["channels"]
    members = {p["clientId"]: p for p in channel["presence"]}
    decoded = {
        client_id: PresenceMessage.from_encoded({"action": 1, **raw}, cipher)
        for client_id, raw in members.items()
    }
    assert all(m.decode_error is None for m in decoded.values())
    assert decoded["client_bool"].data == "true"
    assert decoded["client_int"].data == "24"
    assert decoded["client_json"].data == members["client_json"]["data"]
    assert decoded["client_decoded"].data == {"example": {"json": "Object"}}
    assert decoded["client_encoded"].data == {"example": {"json": "Object"}}
    # Without the cipher the encrypted member keeps its remaining encoding.
    plain = PresenceMessage.from_encoded({"action": 1, **members["client_encoded"]})
    assert plain.encoding == "json/utf-8/cipher+aes-128-cbc"
    assert plain.decode_error is not None
