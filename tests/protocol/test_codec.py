"""Frames and REST bodies in JSON and msgpack; every malformed input is an EncodingError."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
import pytest

from ably_bridge.errors import EncodingError
from ably_bridge.protocol import codec
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.codec import (
    JSON_CONTENT_TYPE,
    MSGPACK_CONTENT_TYPE,
    content_type_for,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
)
from ably_bridge.protocol.models import Message, ProtocolMessage


def sample_frame() -> ProtocolMessage:
    return ProtocolMessage(
        Action.MESSAGE,
        channel="chat",
        msg_serial=0,
        messages=[Message("greet", "hé"), Message("bin", b"\x00\xff")],
    )


def test_json_frames_are_compact_text() -> None:
    frame = encode_frame(sample_frame(), binary=False)
    assert isinstance(frame, str)
    assert frame == (
        '{"action":15,"channel":"chat","msgSerial":0,"messages":'
        '[{"name":"greet","data":"hé"},{"name":"bin","data":"AP8=","encoding":"base64"}]}'
    )


def test_msgpack_frames_carry_bin_and_str() -> None:
    frame = encode_frame(sample_frame(), binary=True)
    assert isinstance(frame, bytes)
    raw = msgpack.unpackb(frame, raw=False)
    assert raw["messages"][1]["data"] == b"\x00\xff"
    assert raw["messages"][0]["data"] == "hé"
    assert frame[0] & 0xF0 == 0x80  # a fixmap
    assert b"\xc4\x02\x00\xff" in frame  # bin 8 with 2 bytes


@pytest.mark.parametrize("binary", [True, False])
def test_frames_round_trip_with_inferred_format(binary: bool) -> None:
    frame = encode_frame(sample_frame(), binary=binary)
    for decoded in (decode_frame(frame), decode_frame(frame, binary=binary)):
        messages = [m.decoded() for m in decoded.messages]
        assert [m.data for m in messages] == ["hé", b"\x00\xff"]
        assert decoded.channel == "chat"


def test_format_inference_for_bytes() -> None:
    text = encode_frame(sample_frame(), binary=False)
    assert isinstance(text, str)
    as_bytes = text.encode()
    assert decode_frame(as_bytes).channel == "chat"
    assert decode_frame(b" \n\t" + as_bytes).channel == "chat"
    assert decode_frame(bytearray(as_bytes)).channel == "chat"
    assert decode_frame(memoryview(as_bytes), binary=False).channel == "chat"
    packed = encode_frame(sample_frame(), binary=True)
    assert isinstance(packed, bytes)
    assert decode_frame(memoryview(packed)).channel == "chat"
    assert decode_frame(bytearray(packed), binary=True).channel == "chat"


MALFORMED_FRAMES: list[tuple[Any, bool | None]] = [
    (b"", None),
    (b"", True),
    ("", None),
    (b"\xc1", None),  # never-used msgpack byte
    (msgpack.packb({"action": 15, "channel": "chat"})[:-2], True),  # truncated
    (msgpack.packb([1, 2, 3]), None),  # not a map
    (msgpack.packb(5), None),
    (msgpack.packb({1: "x"}, use_bin_type=True), None),  # int key
    (msgpack.packb({b"action": 1}, use_bin_type=True), None),  # bin key
    (b"\x81\xa6action\xa1\xff", None),  # str with invalid UTF-8
    (b"\x81\xa1a\x01\x01", None),  # trailing data
    (b"\x91" * 5000 + b"\x80", True),  # nested too deep
    (msgpack.packb({"action": "15"}), None),  # wrong field type
    (msgpack.packb({"messages": [1, 2]}), None),
    (msgpack.packb({"action": 15}), False),  # msgpack parsed as JSON
    ("{", None),
    ('{"action":', None),
    ("[1]", None),
    ("null", None),
    ('{"action":15', None),
    ('{"action":15}', True),  # text given as msgpack
    ('{"action":"x"}', None),
    ("[" * 100_000, None),
    (b'{"action": 1, "id": "\xff"}', None),  # invalid UTF-8 in JSON bytes
    (12345, None),
    (None, None),
]


@pytest.mark.parametrize(("frame", "binary"), MALFORMED_FRAMES)
def test_malformed_frames_raise_encoding_error(frame: Any, binary: bool | None) -> None:
    with pytest.raises(EncodingError) as caught:
        decode_frame(frame, binary=binary)
    assert caught.value.code == 40013
    assert caught.value.status_code == 400


def test_out_of_range_error_code_falls_back_instead_of_failing_the_frame() -> None:
    # ErrorInfo parsing is tolerant: a non-finite code reads as 50000, not a crash.
    pm = decode_frame('{"action":9,"error":{"code":1e999,"statusCode":1e999}}')
    assert pm.error is not None
    assert (pm.error.code, pm.error.status_code) == (50000, 500)


def test_oversized_frames_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_FRAME_BYTES", 10)
    with pytest.raises(EncodingError, match="limit"):
        decode_frame(b"\x80" + b"\x00" * 20)
    monkeypatch.setattr(codec, "MAX_BODY_BYTES", 10)
    with pytest.raises(EncodingError, match="limit"):
        decode_body(b"[" + b"1," * 20 + b"1]", JSON_CONTENT_TYPE)


@pytest.mark.parametrize("binary", [True, False])
def test_unencodable_frames_raise_encoding_error(binary: bool) -> None:
    bad = ProtocolMessage(Action.MESSAGE, messages=[Message("x", extras={"o": object()})])
    with pytest.raises(EncodingError) as caught:
        encode_frame(bad, binary=binary)
    assert caught.value.code == 40013


def test_json_frames_refuse_nan_and_msgpack_refuses_huge_ints() -> None:
    with pytest.raises(EncodingError):
        encode_frame(
            ProtocolMessage(Action.MESSAGE, params=None, msg_serial=0, res=[{"x": float("nan")}]),
            binary=False,
        )
    with pytest.raises(EncodingError):
        encode_frame(ProtocolMessage(Action.MESSAGE, msg_serial=2**70), binary=True)


# -- REST bodies --------------------------------------------------------------


BODY = {"name": "n", "data": "d", "list": [1, 2.5, None, True], "nested": {"k": "é"}}


@pytest.mark.parametrize(
    ("binary", "content_type"),
    [
        (False, JSON_CONTENT_TYPE),
        (False, "application/json; charset=utf-8"),
        (False, "Application/JSON"),
        (False, "application/problem+json"),
        (False, "text/json"),
        (True, MSGPACK_CONTENT_TYPE),
        (True, "application/msgpack"),
        (True, "application/vnd.msgpack; q=1"),
    ],
)
def test_bodies_round_trip(binary: bool, content_type: str) -> None:
    body = encode_body(BODY, binary=binary)
    assert isinstance(body, bytes)
    assert decode_body(body, content_type) == BODY


def test_body_encodings() -> None:
    assert encode_body([1], binary=False) == b"[1]"
    assert encode_body({"a": "é"}, binary=False) == '{"a":"é"}'.encode()
    assert encode_body({"b": b"\x00"}, binary=True) == msgpack.packb(
        {"b": b"\x00"}, use_bin_type=True
    )
    assert content_type_for(True) == MSGPACK_CONTENT_TYPE == "application/x-msgpack"
    assert content_type_for(False) == JSON_CONTENT_TYPE == "application/json"


@pytest.mark.parametrize(
    ("obj", "binary"),
    [
        ({"b": b"\x00"}, False),
        ({"s": "\ud800"}, False),
        ({"o": object()}, True),
        ({"n": float("inf")}, False),
    ],
)
def test_unencodable_bodies(obj: Any, binary: bool) -> None:
    with pytest.raises(EncodingError) as caught:
        encode_body(obj, binary=binary)
    assert caught.value.code == 40013


def test_empty_body_is_none() -> None:
    assert decode_body(b"", JSON_CONTENT_TYPE) is None
    assert decode_body(b"", None) is None


def test_unknown_content_type_gives_a_short_redacted_preview() -> None:
    token = "appId.keyId:SuperSecretKeyValue1234567890"
    body = f"<html>token {token} and a lot more text {'x' * 500}</html>".encode()
    with pytest.raises(EncodingError) as caught:
        decode_body(body, "text/html; charset=utf-8")
    error = caught.value
    assert error.code == 40013
    assert "text/html" in error.message
    assert "<html>" in error.message
    assert "SuperSecret" not in error.message
    assert "<redacted>" in error.message
    assert len(error.message) < 250
    with pytest.raises(EncodingError, match="'none'"):
        decode_body(b"\x00\x01", None)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{", JSON_CONTENT_TYPE),
        (b"\xc1", MSGPACK_CONTENT_TYPE),
        (b"\x92\x01", MSGPACK_CONTENT_TYPE),
    ],
)
def test_malformed_bodies(body: bytes, content_type: str) -> None:
    with pytest.raises(EncodingError) as caught:
        decode_body(body, content_type)
    assert caught.value.code == 40013


def test_time_endpoint_body_both_formats() -> None:
    for binary in (True, False):
        body = encode_body([1700000000000], binary=binary)
        assert decode_body(body, content_type_for(binary)) == [1700000000000]
    assert json.loads(encode_body([1], binary=False)) == [1]
    assert base64.b64encode(encode_body([1], binary=True)) == b"kQE="
