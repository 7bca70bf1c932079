"""Property and fuzz tests: payloads survive the whole send/receive path; bad input only
ever yields EncodingError (at the codec) or a decode_error (on the payload)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ably_bridge.encoding.crypto import get_cipher
from ably_bridge.encoding.payload import decode_data
from ably_bridge.errors import AblyException, EncodingError
from ably_bridge.protocol.actions import Action, PresenceAction
from ably_bridge.protocol.codec import decode_frame, encode_frame
from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
json_containers = st.lists(json_values, max_size=4) | st.dictionaries(
    st.text(max_size=8), json_values, max_size=4
)
payloads = st.text() | st.binary() | json_containers
keys = st.none() | st.binary(min_size=16, max_size=16) | st.binary(min_size=32, max_size=32)
optional_text = st.none() | st.text(max_size=12)
extras = st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3)


@SETTINGS
@given(
    data=payloads,
    key=keys,
    binary=st.booleans(),
    name=optional_text,
    client_id=optional_text,
    extra=extras,
)
def test_message_payloads_round_trip(
    data: Any, key: bytes | None, binary: bool, name: str | None, client_id: str | None, extra: Any
) -> None:
    cipher = get_cipher(key) if key is not None else None
    message = Message(name, data, client_id=client_id, extras=extra)
    frame = encode_frame(
        ProtocolMessage(Action.MESSAGE, channel="ch", messages=[message.encoded(cipher)]),
        binary=binary,
    )
    assert isinstance(frame, bytes if binary else str)
    received = decode_frame(frame)  # format inferred from the frame type
    assert received.action is Action.MESSAGE
    (out,) = received.messages
    out = out.decoded(cipher)
    assert out.decode_error is None
    assert out.encoding is None
    assert type(out.data) is type(data)
    assert out.data == data
    assert (out.name, out.client_id, out.extras) == (name, client_id, extra)


@SETTINGS
@given(data=payloads, key=keys, binary=st.booleans(), action=st.sampled_from(PresenceAction))
def test_presence_payloads_round_trip(
    data: Any, key: bytes | None, binary: bool, action: PresenceAction
) -> None:
    cipher = get_cipher(key) if key is not None else None
    member = PresenceMessage(action, client_id="c", data=data)
    frame = encode_frame(
        ProtocolMessage(Action.PRESENCE, channel="ch", presence=[member.encoded(cipher)]),
        binary=binary,
    )
    (out,) = decode_frame(frame, binary=binary).presence
    out = out.decoded(cipher)
    assert out.decode_error is None
    assert out.action is action
    assert type(out.data) is type(data)
    assert out.data == data


@SETTINGS
@given(
    name=optional_text,
    data=st.none() | st.text() | st.binary(),
    msg_id=optional_text,
    timestamp=st.none() | st.integers(min_value=0, max_value=2**53),
    encoding=st.none() | st.sampled_from(["json", "utf-8", "custom/thing"]),
    serial=optional_text,
    action=st.none() | st.integers(min_value=0, max_value=9),
)
def test_message_dict_round_trip(
    name: str | None,
    data: Any,
    msg_id: str | None,
    timestamp: int | None,
    encoding: str | None,
    serial: str | None,
    action: int | None,
) -> None:
    message = Message(
        name, data, id=msg_id, timestamp=timestamp, encoding=encoding, serial=serial, action=action
    )
    assert Message.from_dict(message.to_dict(binary=True)) == message


STEPS = ["base64", "utf-8", "json", "cipher+aes-128-cbc", "cipher+aes-256-cbc", "vcdiff", "foo", ""]


@SETTINGS
@given(
    data=st.none() | st.integers() | st.text() | st.binary() | json_containers,
    steps=st.lists(st.sampled_from(STEPS), max_size=5),
    key=keys,
)
def test_decode_data_never_raises(data: Any, steps: list[str], key: bytes | None) -> None:
    cipher = get_cipher(key) if key is not None else None
    result = decode_data(data, "/".join(steps), cipher)
    if result.error is None:
        assert result.encoding is None
    else:
        assert isinstance(result.error, AblyException)
        assert result.encoding


def _decode_or_encoding_error(frame: Any, binary: bool | None) -> None:
    # Anything but EncodingError escaping here fails the test.
    error: EncodingError | None = None
    try:
        pm = decode_frame(frame, binary=binary)
    except EncodingError as exc:
        error = exc
    if error is None:
        assert isinstance(pm, ProtocolMessage)
    else:
        assert error.code == 40013


@settings(max_examples=1000, deadline=None)
@given(frame=st.binary() | st.text(), binary=st.none() | st.booleans())
def test_fuzz_random_frames_only_raise_encoding_error(frame: Any, binary: bool | None) -> None:
    _decode_or_encoding_error(frame, binary)


FRAME_KEYS = [
    "action", "id", "channel", "channelSerial", "connectionId", "connectionKey",
    "connectionDetails", "msgSerial", "count", "error", "flags", "timestamp", "messages",
    "presence", "annotations", "state", "auth", "params", "res", "other",
]  # fmt: skip
packable_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
packable = st.recursive(
    packable_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*FRAME_KEYS, "name", "data", "code"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(
    raw=st.dictionaries(st.sampled_from(FRAME_KEYS), packable, max_size=6), as_json=st.booleans()
)
def test_fuzz_structured_frames_only_raise_encoding_error(
    raw: dict[str, Any], as_json: bool
) -> None:
    if as_json:
        # bytes are not JSON; hex them. NaN/Infinity come out as tokens json.loads accepts.
        frame: Any = json.dumps(raw, default=lambda b: b.hex())
    else:
        frame = msgpack.packb(raw, use_bin_type=True)
    _decode_or_encoding_error(frame, None)


VALID_FRAME = msgpack.packb(
    {
        "action": 15,
        "id": "c:1",
        "channel": "ch",
        "connectionDetails": {"maxMessageSize": 10},
        "error": {"code": 40000, "message": "x", "cause": {"code": 1}},
        "messages": [{"name": "n", "data": b"\x00", "extras": {"a": [1]}}],
        "presence": [{"action": 2, "data": "x"}],
        "params": {"a": "b"},
    },
    use_bin_type=True,
)


@settings(max_examples=1000, deadline=None)
@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID_FRAME) - 1), st.integers(0, 255)),
        max_size=4,
    ),
    cut=st.integers(min_value=0, max_value=len(VALID_FRAME)),
)
def test_fuzz_mutated_frames_only_raise_encoding_error(
    flips: list[tuple[int, int]], cut: int
) -> None:
    frame = bytearray(VALID_FRAME)
    for index, value in flips:
        frame[index] = value
    _decode_or_encoding_error(bytes(frame[:cut] if cut else frame), True)
