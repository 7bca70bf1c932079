"""The payload encoding chain: encode_data (RSL4, RSL5) and decode_data (RSL6)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ably_bridge.encoding.crypto import ChannelCipher, CipherParams, get_cipher
from ably_bridge.encoding.payload import (
    DecodeResult,
    DeltaContext,
    append_encoding,
    decode_data,
    encode_data,
    json_text,
    transport_payload,
    undo_delta,
)
from ably_bridge.errors import AblyException, EncodingError, ErrorCode

KEY_128 = bytes(range(16))
KEY_256 = bytes(range(32))
IV = bytes(range(100, 116))


@pytest.fixture(params=[KEY_128, KEY_256], ids=["aes128", "aes256"])
def cipher(request: pytest.FixtureRequest) -> ChannelCipher:
    return get_cipher(CipherParams(key=request.param, iv=IV))


# -- encode (RSL4, spec table in ably-protocol.md 5.2) ------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "expected"),
    [
        (None, None, (None, None)),
        (None, "custom", (None, "custom")),
        ("text", None, ("text", None)),
        ("3q2+7w==", "base64", ("3q2+7w==", "base64")),
        (b"\x00\x01", None, (b"\x00\x01", None)),
        (bytearray(b"ab"), None, (b"ab", None)),
        (memoryview(b"ab"), "custom", (b"ab", "custom")),
        ({"a": [1, "é"]}, None, ('{"a":[1,"é"]}', "json")),
        ([1, 2.5, None, True], None, ("[1,2.5,null,true]", "json")),
        ({}, "user", ("{}", "user/json")),
    ],
)
def test_encode_without_cipher(data: Any, encoding: str | None, expected: tuple[Any, Any]) -> None:
    out = encode_data(data, encoding, None)
    assert out == expected
    if isinstance(out[0], bytes | bytearray):
        assert type(out[0]) is bytes


def test_encode_with_cipher_follows_the_spec_table(cipher: ChannelCipher) -> None:
    token = cipher.encoding_token
    cases: list[tuple[Any, str | None, str, bytes]] = [
        ("héllo", None, f"utf-8/{token}", "héllo".encode()),
        (b"\xff\x00", None, token, b"\xff\x00"),
        ({"k": "v"}, None, f"json/utf-8/{token}", b'{"k":"v"}'),
        (["x"], "user", f"user/json/utf-8/{token}", b'["x"]'),
        ("plain", "base64", f"base64/utf-8/{token}", b"plain"),
    ]
    for data, encoding, wire_encoding, plaintext in cases:
        wire, out_encoding = encode_data(data, encoding, cipher)
        assert out_encoding == wire_encoding
        assert isinstance(wire, bytes)
        assert wire[:16] == IV
        assert cipher.decrypt(wire) == plaintext


@pytest.mark.parametrize(
    "data",
    [42, 1.5, True, {1, 2}, ("tuple",), object(), {"x": {1, 2}}, {"nan": float("nan")}],
    ids=["int", "float", "bool", "set", "tuple", "object", "nested-set", "nan"],
)
def test_encode_rejects_unsupported_data_with_40013(data: Any) -> None:
    with pytest.raises(EncodingError) as caught:
        encode_data(data, None, None)
    assert caught.value.code == ErrorCode.INVALID_DATA_OR_ENCODING


@pytest.mark.parametrize("data", ["lone \ud800 surrogate", ["lone \udfff"]])
def test_encode_rejects_unencodable_text_under_a_cipher(data: Any) -> None:
    with pytest.raises(EncodingError) as caught:
        encode_data(data, None, get_cipher(KEY_128))
    assert caught.value.code == 40013


def test_helpers() -> None:
    assert append_encoding(None, "json") == "json"
    assert append_encoding("", "json") == "json"
    assert append_encoding("a", "b") == "a/b"
    assert json_text({"a": "ü", "b": [1]}) == '{"a":"ü","b":[1]}'
    with pytest.raises(EncodingError):
        json_text({"a": object()})


# -- decode (RSL6) ------------------------------------------------------------


def test_decode_without_encoding_is_identity() -> None:
    marker = object()
    for encoding in (None, ""):
        result = decode_data(marker, encoding, None)
        assert result == DecodeResult(marker, None, None)
        assert result.ok
    assert decode_data(None, "json/utf-8/cipher+aes-128-cbc/base64", None) == DecodeResult(
        None, None, None
    )


@pytest.mark.parametrize(
    ("data", "encoding", "expected"),
    [
        ("3q2+7w==", "base64", b"\xde\xad\xbe\xef"),
        ("3q2+\n7w==\r\n", "base64", b"\xde\xad\xbe\xef"),
        (b"3q2+\n7w==", "base64", b"\xde\xad\xbe\xef"),
        (b"3q2+7w==", "base64", b"\xde\xad\xbe\xef"),
        (b"caf\xc3\xa9", "utf-8", "café"),
        (memoryview(b"caf\xc3\xa9"), "utf-8", "café"),
        ("already text", "utf-8", "already text"),
        ('{"a":1}', "json", {"a": 1}),
        (b"[1,2]", "json", [1, 2]),
        (bytearray(b"[1,2]"), "json", [1, 2]),
        (memoryview(b'"s"'), "json", "s"),
        ("[]", "json//", []),
        ('"x"', "/json", "x"),
        (base64.b64encode(b'{"a":"\xc3\xa9"}').decode(), "json/utf-8/base64", {"a": "é"}),
    ],
)
def test_decode_steps(data: Any, encoding: str, expected: Any) -> None:
    result = decode_data(data, encoding, None)
    assert result.error is None
    assert result.encoding is None
    assert result.data == expected


def test_decode_through_the_cipher(cipher: ChannelCipher) -> None:
    wire, encoding = encode_data({"deep": ["json"]}, None, cipher)
    assert isinstance(wire, bytes)
    result = decode_data(base64.b64encode(wire).decode(), f"{encoding}/base64", cipher)
    assert result == DecodeResult({"deep": ["json"]}, None, None)
    wire, encoding = encode_data(b"\x00raw", None, cipher)
    assert decode_data(wire, encoding, cipher).data == b"\x00raw"


@pytest.mark.parametrize(
    ("data", "encoding", "remaining", "code"),
    [
        ("payload", "foo", "foo", 40013),
        ("payload", "json/foo", "json/foo", 40013),
        (b"delta", "vcdiff", "vcdiff", 40019),
        (b"x", "utf-8/vcdiff", "utf-8/vcdiff", 40019),
        ("not base64!", "base64", "base64", 40013),
        (b"\xff\xfe\xfd", "utf-8", "utf-8", 40013),
        ("{not json", "json", "json", 40013),
        (12345, "base64", "base64", 40013),
        (12345, "utf-8", "utf-8", 40013),
        (12345, "json", "json", 40013),
    ],
)
def test_decode_stops_at_the_first_step_it_cannot_undo(
    data: Any, encoding: str, remaining: str, code: int
) -> None:
    result = decode_data(data, encoding, None)
    assert result.encoding == remaining
    assert result.data == data
    assert isinstance(result.error, AblyException)
    assert result.error.code == code
    assert not result.ok


def test_decode_keeps_the_partial_result() -> None:
    # base64 undone, then a vcdiff step it cannot undo: bytes with "vcdiff" left.
    result = decode_data(base64.b64encode(b"delta").decode(), "vcdiff/base64", None)
    assert result.data == b"delta"
    assert result.encoding == "vcdiff"
    assert result.error is not None
    assert result.error.code == ErrorCode.MISSING_PLUGIN


def test_decode_non_utf8_bytes_marked_utf8_after_base64() -> None:
    encoded = base64.b64encode(b"\xc3\x28").decode()
    result = decode_data(encoded, "utf-8/base64", None)
    assert result.data == b"\xc3\x28"
    assert result.encoding == "utf-8"
    assert isinstance(result.error, EncodingError)
    assert isinstance(result.error.cause, UnicodeDecodeError)


def test_decode_encrypted_without_a_cipher() -> None:
    wire, encoding = encode_data("secret text", None, get_cipher(KEY_128))
    assert isinstance(wire, bytes)
    text = base64.b64encode(wire).decode()
    result = decode_data(text, f"{encoding}/base64", None)
    assert result.data == wire
    assert result.encoding == "utf-8/cipher+aes-128-cbc"
    assert result.error is not None
    assert result.error.code == 40013
    assert "no cipher" in result.error.message


def test_decode_with_a_cipher_of_the_other_length() -> None:
    wire, encoding = encode_data("x", None, get_cipher(KEY_256))
    result = decode_data(wire, encoding, get_cipher(KEY_128))
    assert result.encoding == "utf-8/cipher+aes-256-cbc"
    assert result.error is not None
    assert "aes-256-cbc" in result.error.message
    assert "aes-128-cbc" in result.error.message


def test_decode_with_the_wrong_key_keeps_the_ciphertext() -> None:
    wire, encoding = encode_data({"a": 1}, None, get_cipher(CipherParams(key=KEY_128, iv=IV)))
    result = decode_data(wire, encoding, get_cipher(bytes(16)))
    assert result.data == wire
    assert result.encoding == "json/utf-8/cipher+aes-128-cbc"
    assert result.error is not None
    assert result.error.code == 40013


def test_decode_encrypted_text_that_is_not_bytes() -> None:
    result = decode_data("text", "cipher+aes-128-cbc", get_cipher(KEY_128))
    assert result.encoding == "cipher+aes-128-cbc"
    assert result.error is not None


def test_decode_survives_pathological_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    result = decode_data(deep, "json", None)
    assert result.encoding == "json"
    assert result.error is not None
    assert json.loads("[[1]]") == decode_data("[[1]]", "json", None).data


def test_cipher_params_are_accepted_where_a_cipher_is() -> None:
    from ably_bridge.encoding.crypto import generate_random_key, get_default_params

    params = get_default_params(key=generate_random_key(128))
    data, encoding = encode_data("hi", None, params)
    assert encoding == "utf-8/cipher+aes-128-cbc"
    result = decode_data(data, encoding, params)
    assert (result.data, result.encoding, result.error) == ("hi", None, None)


# -- vcdiff deltas (PC3, RTL19) -----------------------------------------------------------
class _Splice:
    """A stand-in VCDIFF decoder: the "delta" is ``b"<n>|<tail>"``, meaning the base's
    first n bytes followed by tail."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def decode(self, delta: bytes, base: bytes) -> bytes:
        self.calls.append((delta, base))
        keep, _, tail = delta.partition(b"|")
        return base[: int(keep)] + tail


def test_a_delta_applies_to_the_base_and_becomes_the_next_base() -> None:
    decoder = _Splice()
    ctx = DeltaContext(decoder)
    assert decode_data("hello world", None, None, ctx).data == "hello world"
    assert ctx.base == "hello world"  # RTL19b: a message without encoding is its own base
    delta = base64.b64encode(b"6|there").decode()
    result = decode_data(delta, "utf-8/vcdiff/base64", None, ctx)
    assert (result.data, result.encoding, result.error) == ("hello there", None, None)
    assert decoder.calls == [(b"6|there", b"hello world")]  # a text base as UTF-8
    assert ctx.base == b"hello there"  # RTL19c: right after the vcdiff step, before utf-8
    # A JSON payload: the base is its JSON text, as published.
    result = decode_data(b'0|{"a":1}', "json/utf-8/vcdiff", None, ctx)
    assert result.data == {"a": 1} and ctx.base == b'{"a":1}'
    # A non-delta message after base64: its base is the bytes the base64 carried.
    assert decode_data(base64.b64encode(b"raw").decode(), "base64", None, ctx).data == b"raw"
    assert ctx.base == b"raw"
    # Only the transport's (outermost) base64 is undone for the base.
    twice = base64.b64encode(base64.b64encode(b"raw")).decode()
    assert decode_data(twice, "base64/base64", None, ctx).data == b"raw"
    assert ctx.base == base64.b64encode(b"raw")


def test_deltas_that_cannot_be_applied_are_40019_or_40018_and_keep_the_base() -> None:
    assert decode_data(b"1|x", "vcdiff", None, DeltaContext(None)).error.code == 40019  # type: ignore[union-attr]
    no_base = DeltaContext(_Splice())
    assert decode_data(b"1|x", "vcdiff", None, no_base).error.code == 40018  # type: ignore[union-attr]
    ctx = DeltaContext(_Splice(), base=b"abc")
    text = decode_data("1|x", "vcdiff", None, ctx)  # a delta must be binary
    assert text.error is not None and text.error.code == 40018 and text.encoding == "vcdiff"

    class Broken:
        def decode(self, delta: bytes, base: bytes) -> bytes:
            raise ValueError("corrupt window")

    broken = DeltaContext(Broken(), base=b"abc")
    result = decode_data(b"\xd6", "vcdiff", None, broken)
    assert result.error is not None and result.error.code == 40018
    assert "ValueError" in result.error.message and result.data == b"\xd6"
    assert broken.base == b"abc"  # a failed message never becomes a base


def test_undo_delta_leaves_the_rest_of_the_encoding_for_payloads_delivered_encoded() -> None:
    ctx = DeltaContext(_Splice(), base="hello world")
    wire = base64.b64encode(b"6|there").decode()
    result = undo_delta(wire, "json/utf-8/vcdiff/base64", ctx)
    assert (result.data, result.encoding, result.error) == (b"hello there", "json/utf-8", None)
    assert ctx.base == b"hello there"
    whole = undo_delta(b"0|raw", "vcdiff", ctx)  # msgpack: no transport base64
    assert (whole.data, whole.encoding) == (b"raw", None) and ctx.base == b"raw"
    bad = undo_delta("not base64!", "vcdiff/base64", ctx)
    assert bad.error is not None and bad.error.code == 40018 and ctx.base == b"raw"
    missing = undo_delta(b"1|x", "vcdiff", DeltaContext(None, base=b"abc"))
    assert missing.error is not None and missing.error.code == 40019
    inner = undo_delta(b"x", "vcdiff/cipher+aes-128-cbc", ctx)  # not the outermost step
    assert inner.error is not None and inner.error.code == 40018 and ctx.base == b"raw"


def test_transport_payload_is_the_base_a_whole_encoded_message_leaves() -> None:
    assert transport_payload("text", None) == "text"
    assert transport_payload("text", "json") == "text"
    assert transport_payload(base64.b64encode(b"\x00\x01").decode(), "base64") == b"\x00\x01"
    assert transport_payload("not base64!", "utf-8/base64") == "not base64!"
