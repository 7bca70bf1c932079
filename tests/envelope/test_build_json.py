"""The builder's JSON, written as it fills in the event, against the straightforward encoding.

``EnvelopeBuilder`` writes a message's or presence message's envelope JSON
member by member when every value is a string or an int (``envelope/build.py``);
whatever it writes must be the text ``json.dumps`` makes of ``to_dict()`` and
read back by the decoder as the same event.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ably_bridge.envelope import (
    EnvelopeBuilder,
    UndecodableEvent,
    decode_envelope,
    envelope_from_dict,
)
from ably_bridge.protocol.models import Message, PresenceMessage

B = EnvelopeBuilder("app\u00e9", "site-1")

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
) | st.sampled_from(["", "h\u00e9llo", 'q"uote\\', "\u2028\u0000\x1f", "\U0001f600 emoji"])
_json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # big ints too
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_data = st.none() | _text | st.binary(max_size=16) | _json_value
_optional = st.none() | _text


@st.composite
def _message(draw: st.DrawFn) -> Message:
    return Message(
        draw(_optional),
        draw(_data),
        id=draw(_text.filter(bool)),
        client_id=draw(_optional),
        connection_id=draw(_optional),
        timestamp=draw(st.none() | st.integers(min_value=0, max_value=2**63)),
        encoding=draw(st.none() | st.sampled_from(["utf-8", "base64"])),
        extras=draw(st.none() | st.dictionaries(_text, _json_value, max_size=2)),
        serial=draw(st.none() | _text),
        action=draw(st.none() | st.just(0)),
    )


def _check(env: Any) -> None:
    """The text is the straightforward encoding of ``to_dict()`` and decodes back."""
    text = env.to_json()
    reference = json.dumps(
        env.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert text == reference
    assert json.loads(text) == env.to_dict()
    assert env.size() == len(reference.encode("utf-8"))
    rebuilt = envelope_from_dict(json.loads(text))
    assert rebuilt.item == env.item and rebuilt.timestamp == env.timestamp


@settings(max_examples=300, deadline=None)
@given(_message(), st.sampled_from(["decoded", "encoded"]))
def test_message_json_is_the_straightforward_encoding(message: Message, mode: Any) -> None:
    if mode == "decoded" and message.encoding == "base64" and not isinstance(message.data, str):
        message.encoding = None  # (base64 of a non-string is undecodable: tested elsewhere)
    try:
        env = B.message("ch\u00e9:1", message, "r\u00e9", mode=mode, now_ms=7)
    except UndecodableEvent:  # (e.g. base64 that is not)
        return
    _check(env)
    (event,) = decode_envelope(env.to_json())
    assert event.channel == "ch\u00e9:1" and event.rule_id == "r\u00e9"
    assert event.client_id == message.client_id and event.name == message.name


@settings(max_examples=100, deadline=None)
@given(_optional, _data, st.integers(min_value=0, max_value=5))
def test_presence_json_is_the_straightforward_encoding(
    client_id: str | None, data: Any, action: int
) -> None:
    msg = PresenceMessage(action, id="c:1:0", client_id=client_id, data=data, timestamp=5)
    env = B.presence("room", msg, "r")
    _check(env)
    (event,) = decode_envelope(env.to_json())
    assert int(event.action or 0) == action and event.client_id == client_id


def test_plain_text_message_binary_and_extras_alike() -> None:
    plain = B.message("c", Message("n", 'h\u00e9llo "x"', id="c:1:0", timestamp=2**70), "r")
    binary = B.message("c", Message("n", b"\x00\xff", id="c:1:1", timestamp=1), "r")
    extras = B.message(
        "c", Message("n", "t", id="c:1:2", timestamp=1, extras={"h": {"k": 1.5}}), "r"
    )
    for env in (plain, binary, extras):
        _check(env)
    assert '"timestamp":1180591620717411303424,' in plain.to_json()
    assert json.loads(binary.to_json())["messages"][0]["encoding"] == "base64"


def test_data_that_json_refuses_fails_when_encoded_not_when_built() -> None:
    env = B.message("c", Message("n", {"v": math.nan}, id="c:1:0", timestamp=1), "r")
    assert math.isnan(env.item["data"]["v"])
    with pytest.raises(ValueError, match="JSON compliant"):
        env.to_json()
