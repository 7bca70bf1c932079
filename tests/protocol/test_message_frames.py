"""The MESSAGE frame fast path of ``ProtocolMessage.from_dict`` against the generic reader.

``from_dict`` reads a dict that has only a MESSAGE frame's usual keys without
its generic loop (``frames._message_frame``); any other shape falls back to the
generic reader. A ``MappingProxyType`` is not a dict, so it always takes the
generic path: each case below must give the same frame, or the same error, both ways.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from ably_bridge.errors import EncodingError
from ably_bridge.protocol import codec, frames
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.codec import decode_frame, encode_frame
from ably_bridge.protocol.models import Message, ProtocolMessage

_MESSAGE = {"name": "m", "data": "x" * 10, "id": "c1:5:0", "serial": "s1", "action": 0}
_FRAME: dict[str, Any] = {
    "action": 15,
    "channel": "ch",
    "channelSerial": "s1",
    "connectionId": "c1",
    "id": "c1:5",
    "timestamp": 1700000000000,
    "messages": [_MESSAGE],
}

CASES: list[dict[str, Any]] = [
    _FRAME,
    {"action": 15, "channel": "ch", "messages": [{"data": "x"}]},  # defaults left to fill
    {**_FRAME, "messages": [{"data": "a"}, {"data": "b", "id": "own"}]},  # TM2a per index
    {**_FRAME, "id": None, "connectionId": None, "timestamp": None},  # null means absent
    {**_FRAME, "messages": []},
    {**_FRAME, "timestamp": 1.7e12},  # an integral float: generic path, read as an int
    {**_FRAME, "timestamp": 1.5},  # malformed
    {**_FRAME, "action": True},  # a bool is not an action
    {**_FRAME, "action": 14},  # not a MESSAGE: generic path (PRESENCE-shaped keys)
    {**_FRAME, "channel": 7},  # malformed
    {**_FRAME, "channelSerial": b"s"},  # malformed
    {**_FRAME, "connectionId": ["c"]},  # malformed
    {**_FRAME, "id": 5},  # malformed
    {**_FRAME, "messages": ({"data": "t"},)},  # a tuple: read as a list by the generic path
    {**_FRAME, "messages": "nope"},  # malformed
    {**_FRAME, "messages": [3]},  # a message that is not a map
    {**_FRAME, "flags": 1},  # another key: generic path
    {**_FRAME, "unknownKey": 1},  # ignored (RSF1), generic path
]


def _read(raw: Any) -> ProtocolMessage | str:
    try:
        return ProtocolMessage.from_dict(raw)
    except EncodingError as exc:
        return f"{exc.code}: {exc.message}"


@pytest.mark.parametrize("raw", CASES)
def test_the_fast_path_reads_what_the_generic_reader_reads(raw: dict[str, Any]) -> None:
    assert _read(raw) == _read(MappingProxyType(raw))


def test_the_fast_path_takes_the_usual_message_frame() -> None:
    pm = frames._message_frame(dict(_FRAME))
    assert pm is not None and pm.action is Action.MESSAGE
    expected = Message.from_dict(_MESSAGE)
    expected.connection_id, expected.timestamp = "c1", _FRAME["timestamp"]  # TM2c, TM2f
    assert pm.messages == [expected]
    assert frames._message_frame({**_FRAME, "timestamp": 1.7e12}) is None  # left to the generic


@pytest.mark.parametrize("binary", [True, False])
def test_decode_frame_reads_a_message_frame_in_both_formats(binary: bool) -> None:
    pm = ProtocolMessage.from_dict(_FRAME)
    assert decode_frame(encode_frame(pm, binary=binary), binary=binary) == pm


def test_an_oversized_msgpack_frame_is_refused_on_the_hot_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = encode_frame(ProtocolMessage.from_dict(_FRAME), binary=True)
    assert isinstance(frame, bytes)
    monkeypatch.setattr(codec, "MAX_FRAME_BYTES", len(frame) - 1)
    with pytest.raises(EncodingError, match="limit"):
        decode_frame(frame, binary=True)


@pytest.mark.parametrize("frame", [b"\xc1", b"\x93\x01\x02", b"\x81\xa6action\xa3str"])
def test_a_bad_msgpack_frame_is_40013_on_the_hot_path(frame: bytes) -> None:
    # Not msgpack at all; an array, not a map; an action that is not an integer.
    with pytest.raises(EncodingError) as caught:
        decode_frame(frame, binary=True)
    assert caught.value.code == 40013


def test_the_slot_by_slot_readers_set_every_field() -> None:
    # Message.from_dict and the frame fast path build their objects without __init__:
    # a field added to either class must be set there too (or reading it raises).
    from dataclasses import fields

    full = {
        "name": "n", "data": "d", "id": "i", "clientId": "c", "connectionId": "k",
        "connectionKey": "secret", "encoding": "json", "extras": {"e": 1},
        "timestamp": 5, "serial": "s", "action": 1, "version": {"serial": "v"},
        "annotations": {"summary": {}},
    }  # fmt: skip
    message = Message.from_dict(full)
    assert {f.name for f in fields(Message) if not hasattr(message, f.name)} == set()
    assert message == Message(
        "n", "d", id="i", client_id="c", connection_id="k", connection_key="secret",
        encoding="json", extras={"e": 1}, timestamp=5, serial="s", action=1,
        version={"serial": "v"}, annotations={"summary": {}},
    )  # fmt: skip
    pm = frames._message_frame(dict(_FRAME))
    assert pm is not None
    assert {f.name for f in fields(ProtocolMessage) if not hasattr(pm, f.name)} == set()
    assert pm == ProtocolMessage(
        Action.MESSAGE, id="c1:5", channel="ch", channel_serial="s1", connection_id="c1",
        timestamp=_FRAME["timestamp"], messages=pm.messages,
    )  # fmt: skip
