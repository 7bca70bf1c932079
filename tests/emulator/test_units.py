"""Pure parts of the emulator: capability rules, names, MACs, transcoding, history queries."""

from __future__ import annotations

import base64

import pytest
import vcdiff_decoder
from hypothesis import given, settings
from hypothesis import strategies as st

from ably_bridge.emulator import capability as caps
from ably_bridge.emulator import codec, vcdiff
from ably_bridge.emulator.channels import query_history
from ably_bridge.emulator.names import parse_channel_name
from ably_bridge.emulator.state import Credentials, EmulatorState
from ably_bridge.errors import AblyException
from ably_bridge.protocol.tokens import token_request_mac


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("*", "foo", True),
        ("*", "foo:bar:baz", True),
        ("*", "[meta]channel.lifecycle", False),
        ("[*]*", "[meta]channel.lifecycle", True),
        ("[meta]*", "[meta]x", True),
        ("ns:*", "ns:a", True),
        ("ns:*", "ns:a:b", True),
        ("ns:*", "ns", False),
        ("a:*:c", "a:b:c", True),
        ("a:*:c", "a:b:d", False),
        ("a:*:c", "a:b:x:c", False),
        ("foo*", "foobar", False),
        ("foo*", "foo*", True),
        ("channel0", "channel0", True),
        ("channel0", "[?rewind=1]channel0", True),
        ("cansubscribe:*", "cansubscribe:x", True),
    ],
)
def test_resource_matching(pattern: str, channel: str, expected: bool) -> None:
    assert caps.resource_matches(pattern, channel) is expected


def test_operations_union_and_star() -> None:
    cap = caps.parse('{"a:*":["subscribe"],"a:b":["publish"],"x":["*"]}')
    assert caps.operations_for(cap, "a:b") == {"subscribe", "publish"}
    assert "history" in caps.operations_for(cap, "x")
    assert caps.operations_for(cap, "other") == frozenset()
    assert not caps.allows_app_wide(cap, "stats")
    assert caps.allows_app_wide(caps.parse('{"*":["stats"]}'), "stats")


def test_intersection_narrows_to_key() -> None:
    key = caps.parse('{"channel0":["publish"],"channel2":["publish","subscribe"]}')
    assert caps.intersect(caps.parse('{"*":["*"]}'), key) == key
    got = caps.intersect(caps.parse('{"channel2":["subscribe","presence"]}'), key)
    assert got == {"channel2": frozenset({"subscribe"})}
    assert caps.intersect(caps.parse('{"nope":["publish"]}'), key) == {}
    text = '{ "b":["subscribe","history"], "a":["publish"] }'
    assert caps.to_json(caps.parse(text)) == '{"a":["publish"],"b":["history","subscribe"]}'
    for bad in ('{"a":["publish_"]}', '{"a":["*","publish"]}', '{"a":[]}'):
        with pytest.raises(AblyException) as info:
            caps.parse(bad)
        assert (info.value.code, info.value.status_code) == (40000, 400)


def test_token_request_mac_worked_examples() -> None:
    # ably-protocol.md 6.3 worked example
    mac = token_request_mac(
        "keySecret", "appId.keyId", 3600000, '{"*":["*"]}', None, 1700000000000, "0123456789abcdef"
    )
    assert mac == "OI6IfzIRgCveuFLXwJmQfPBxOvllJtAKbXA+Ls5wNn0="
    mac2 = token_request_mac(
        "keySecret", "appId.keyId", None, None, "alice", 1700000000000, "0123456789abcdef"
    )
    assert mac2 == "AQ+4Tzhbd0GYHup62jUwc0H+khnMwTUK7xD4nnTEdGQ="


@pytest.mark.parametrize(
    "name", ["", ":x", ",x", " x", "a\nb", "[bogus]x", "[meta]", "[?a=1]", "[unterminated"]
)
def test_invalid_channel_names(name: str) -> None:
    with pytest.raises(AblyException) as info:
        parse_channel_name(name)
    assert info.value.code == 40010


def test_qualified_names() -> None:
    parsed = parse_channel_name("[?rewind=1&delta=vcdiff]chat")
    assert (parsed.base, parsed.params) == ("chat", {"rewind": "1", "delta": "vcdiff"})
    assert parse_channel_name("[meta]channel.lifecycle").base == "[meta]channel.lifecycle"
    derived = parse_channel_name("[filter=bmFtZSA9PSAnYSc=?rewind=1]chat")
    assert (derived.base, derived.filter_expr, derived.params) == (
        "chat",
        "name == 'a'",
        {"rewind": "1"},
    )


def test_transcoding_rules() -> None:
    stored = codec.ingest({"data": "AAEC", "encoding": "utf-8/cipher+aes-128-cbc/base64"}, "json")
    assert stored == {"data": b"\x00\x01\x02", "encoding": "utf-8/cipher+aes-128-cbc"}
    assert codec.ingest({"data": "AAEC", "encoding": "base64"}, "json") == {"data": b"\x00\x01\x02"}
    assert codec.ingest({"data": "AAEC", "encoding": "base64"}, "msgpack")["data"] == "AAEC"
    out = codec.jsonable({"messages": [{"data": b"\x00\x01\x02", "encoding": "json"}]})
    assert out == {"messages": [{"data": "AAEC", "encoding": "json/base64"}]}
    assert codec.jsonable({"data": b"\x00\x01\x02"}) == {"data": "AAEC", "encoding": "base64"}


def test_history_query_pages_both_ways() -> None:
    items = [{"serial": f"{i:016d}", "timestamp": 1000 + i} for i in range(1, 8)]
    page = query_history(items, start=None, end=None, backwards=True, limit=3, cursor=None)
    assert [i["timestamp"] for i in page.items] == [1007, 1006, 1005]
    page2 = query_history(
        items, start=None, end=None, backwards=True, limit=3, cursor=page.next_cursor
    )
    assert [i["timestamp"] for i in page2.items] == [1004, 1003, 1002]
    fwd = query_history(items, start=1002, end=1004, backwards=False, limit=10, cursor=None)
    assert [i["timestamp"] for i in fwd.items] == [1002, 1003, 1004]
    assert fwd.next_cursor is None
    until = query_history(
        items, start=None, end=None, backwards=True, limit=10, cursor=None, until_serial=f"{3:016d}"
    )
    assert [i["timestamp"] for i in until.items] == [1003, 1002, 1001]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600), st.integers(0, 600))
def test_vcdiff_deltas_decode_with_ablys_decoder(source: bytes, tail: bytes, keep: int) -> None:
    target = source[:keep] + tail  # shares a prefix with the source, or not
    assert vcdiff_decoder.decode(source, vcdiff.encode(source, target)) == target


def test_a_delta_stream_sends_deltas_after_the_first_message_and_breaks_on_others() -> None:
    stream = vcdiff.DeltaStream()
    text = "a long enough line of text " * 4
    items = [
        {"id": "c:1:0", "data": text},
        {"id": "c:1:1", "data": text + "!", "extras": {"headers": {"h": "1"}}},
        {"id": "c:1:2", "data": "Zm9v", "encoding": "cipher+aes-128-cbc/base64"},
        {"id": "c:1:3", "data": text},
    ]
    first, second, opaque, after = stream.messages(items, "json")
    assert first is items[0] and opaque is items[2]  # sent whole
    assert second["encoding"] == "utf-8/vcdiff/base64"
    assert second["extras"] == {
        "headers": {"h": "1"},
        "delta": {"from": "c:1:0", "format": "vcdiff"},
    }
    delta = base64.b64decode(second["data"])
    assert vcdiff_decoder.decode(text.encode(), delta) == (text + "!").encode()
    assert after is items[3]  # the chain broke at the encrypted payload: whole again
    (binary,) = vcdiff.DeltaStream().messages([{"id": "x", "data": b"\x00" * 10}], "msgpack")
    stream = vcdiff.DeltaStream()
    stream.messages([{"id": "x", "data": b"\x00" * 10}], "msgpack")
    (delta_msg,) = stream.messages([{"id": "y", "data": b"\x00" * 12}], "msgpack")
    assert delta_msg["encoding"] == "vcdiff" and isinstance(delta_msg["data"], bytes)
    assert binary["data"] == b"\x00" * 10


def test_a_parsed_channel_name_is_remembered_and_an_invalid_one_refused_each_time() -> None:
    first = parse_channel_name("[?rewind=1]cached-name")
    assert parse_channel_name("[?rewind=1]cached-name") is first
    assert (first.base, first.params) == ("cached-name", {"rewind": "1"})
    for _ in range(2):
        with pytest.raises(AblyException) as caught:
            parse_channel_name("[unknown]x")
        assert caught.value.code == 40010
    with pytest.raises(AblyException):
        parse_channel_name(["not", "a", "name"])  # unhashable: refused, not a TypeError


def test_credentials_operations_follow_a_new_capability() -> None:
    app = EmulatorState().create_app({"keys": [{"capability": '{"a:*": ["publish"]}'}]})
    key = app.ordered_keys()[0]
    creds = Credentials(app, key, key.capability, None)
    assert creds.operations("a:x") == frozenset({"publish"})
    assert creds.operations("b") == frozenset()
    creds.capability = caps.parse({"b": ["subscribe"]})
    assert creds.operations("a:x") == frozenset()
    assert creds.operations("b") == frozenset({"subscribe"})


def test_msgpack_encoding_after_a_failed_encoding_carries_nothing_over() -> None:
    with pytest.raises(TypeError):
        codec.encode({"action": 1, "bad": object()}, "msgpack")
    assert codec.encode({"action": 1}, "msgpack") == b"\x81\xa6action\x01"
    big = {"data": b"x" * (2 << 20)}
    assert codec.decode(codec.encode(big, "msgpack"), "msgpack") == big
    assert codec.encode([1], "msgpack") == b"\x91\x01"
