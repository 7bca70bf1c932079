"""The wire model: Message, PresenceMessage, ConnectionDetails, ProtocolMessage (TM, TP, CD, TR)."""

from __future__ import annotations

import base64
from types import MappingProxyType
from typing import Any

import pytest

from ably_bridge.encoding.crypto import CipherParams, get_cipher
from ably_bridge.errors import AblyException, EncodingError, TokenError
from ably_bridge.protocol.actions import Action, Flag, MessageAction, PresenceAction
from ably_bridge.protocol.models import (
    ConnectionDetails,
    ErrorInfo,
    Message,
    PresenceMessage,
    ProtocolMessage,
)

KEY = bytes(range(16))
IV = bytes(range(100, 116))


def full_message() -> Message:
    return Message(
        "greet",
        "hi",
        id="c1:0:0",
        client_id="alice",
        connection_id="c1",
        connection_key="c1!secret-key",
        encoding="custom",
        extras={"headers": {"k": "v"}},
        timestamp=1700000000000,
        serial="s1",
        action=MessageAction.MESSAGE_UPDATE,
        version={"serial": "v1"},
        annotations={"summary": {}},
    )


# -- Message ------------------------------------------------------------------


def test_message_to_dict_uses_camel_case_and_omits_none() -> None:
    wire = full_message().to_dict(binary=False)
    assert wire == {
        "id": "c1:0:0",
        "name": "greet",
        "data": "hi",
        "encoding": "custom",
        "clientId": "alice",
        "connectionId": "c1",
        "connectionKey": "c1!secret-key",
        "extras": {"headers": {"k": "v"}},
        "timestamp": 1700000000000,
        "serial": "s1",
        "action": 1,
        "version": {"serial": "v1"},
        "annotations": {"summary": {}},
    }
    assert type(wire["action"]) is int
    assert Message().to_dict(binary=True) == {}
    assert Message("n").to_dict(binary=False) == {"name": "n"}


def test_message_round_trips_through_its_dict() -> None:
    original = full_message()
    for binary in (True, False):
        assert Message.from_dict(original.to_dict(binary=binary)) == original


def test_binary_data_on_the_two_transports() -> None:
    for data in (b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")):
        msg = Message("b", data, encoding="user")
        packed = msg.to_dict(binary=True)
        assert packed["data"] == b"\x00\xff"
        assert type(packed["data"]) is bytes
        assert packed["encoding"] == "user"
        as_json = msg.to_dict(binary=False)
        assert as_json["data"] == "AP8="
        assert as_json["encoding"] == "user/base64"
    assert Message(data=b"x").to_dict(binary=False)["encoding"] == "base64"


def test_message_from_dict_is_tolerant() -> None:
    msg = Message.from_dict(
        {
            "name": 5,
            "data": {"raw": "kept as is"},
            "clientId": None,
            "encoding": "",
            "extras": "not an object",
            "timestamp": 1.0,
            "action": "update",
            "version": [],
            "unknown": "ignored",
        }
    )
    assert msg.name is None
    assert msg.data == {"raw": "kept as is"}
    assert msg.encoding is None
    assert msg.extras is None
    assert msg.timestamp == 1
    assert msg.action is None
    assert msg.version is None
    odd = Message.from_dict(
        {"timestamp": "soon", "action": 77, "annotations": MappingProxyType({"a": 1})}
    )
    assert odd.timestamp is None
    assert odd.action == 77
    assert type(odd.action) is int
    assert odd.annotations == {"a": 1}
    assert Message.from_dict({"timestamp": 1.5}).timestamp is None


@pytest.mark.parametrize("raw", [None, [], "text", 5])
def test_from_dict_rejects_non_mappings(raw: Any) -> None:
    for kind in (Message, PresenceMessage):
        with pytest.raises(EncodingError) as caught:
            kind.from_dict(raw)
        assert caught.value.code == 40013
    if raw != []:
        with pytest.raises(EncodingError):
            Message.from_encoded_array(raw)


def test_encoded_and_decoded_return_new_messages() -> None:
    cipher = get_cipher(CipherParams(key=KEY, iv=IV))
    original = Message("n", {"a": [1]}, client_id="c")
    encoded = original.encoded(cipher)
    assert encoded is not original
    assert original.data == {"a": [1]}
    assert encoded.encoding == "json/utf-8/cipher+aes-128-cbc"
    assert encoded.client_id == "c"
    decoded = encoded.decoded(cipher)
    assert decoded == original
    assert decoded.decode_error is None
    assert Message("n", "plain").encoded() == Message("n", "plain")


def test_decode_failure_sets_decode_error_and_keeps_the_encoding() -> None:
    encoded = Message("n", "secret").encoded(get_cipher(KEY))
    failed = encoded.decoded(None)
    assert failed.data == encoded.data
    assert failed.encoding == "utf-8/cipher+aes-128-cbc"
    assert isinstance(failed.decode_error, AblyException)
    assert failed.decode_error.code == 40013
    # decode_error is not part of equality or repr.
    assert failed == encoded
    assert "decode_error" not in repr(failed)


def test_from_encoded_and_from_encoded_array() -> None:
    wire = [
        {"name": "a", "data": "eyJ4IjoxfQ==", "encoding": "json/base64"},
        {"name": "b", "data": "foo", "encoding": "vcdiff"},
    ]
    first, second = Message.from_encoded_array(wire)
    assert first.data == {"x": 1}
    assert first.encoding is None
    assert second.decode_error is not None
    assert second.decode_error.code == 40019
    assert second.encoding == "vcdiff"
    single = Message.from_encoded(wire[0])
    assert single == first
    assert Message.from_encoded_array(tuple(wire))[0] == first
    msg = Message.from_dict(wire[0])
    assert msg.decode_in_place() is None
    assert msg.data == {"x": 1}


def test_repr_hides_the_connection_key() -> None:
    text = repr(full_message())
    assert "c1!secret-key" not in text
    assert "greet" in text


def test_message_size_counts_utf8_bytes() -> None:
    # name 5 + data 2 ("é" is 2 bytes) + clientId 3 + extras '{"a":1}' 7 = 17
    assert Message("hello", "é", client_id="bob", extras={"a": 1}).size() == 17
    assert Message(data=b"\x00" * 10).size() == 10
    assert Message(data=memoryview(b"abcd")).size() == 4
    assert Message(data={"k": "v"}).size() == len('{"k":"v"}')
    assert Message(data=["ü"]).size() == len('["ü"]'.encode())
    assert Message().size() == 0
    assert Message("ñ", 42).size() == 2  # unsupported data counts 0
    assert PresenceMessage(data="abc", client_id="x").size() == 4


def test_error_info_is_the_exception() -> None:
    assert ErrorInfo is AblyException


# -- PresenceMessage ----------------------------------------------------------


def test_presence_message_wire_form() -> None:
    member = PresenceMessage(
        PresenceAction.ENTER,
        id="c1:3:0",
        client_id="bob",
        connection_id="c1",
        data=b"\x01",
        encoding=None,
        extras={"x": 1},
        timestamp=10,
    )
    as_json = member.to_dict(binary=False)
    assert as_json == {
        "action": 2,
        "id": "c1:3:0",
        "clientId": "bob",
        "connectionId": "c1",
        "data": "AQ==",
        "encoding": "base64",
        "extras": {"x": 1},
        "timestamp": 10,
    }
    assert PresenceMessage.from_dict(member.to_dict(binary=True)) == member
    assert PresenceMessage.from_encoded(as_json) == member
    assert PresenceMessage().to_dict(binary=True) == {"action": 0}


def test_presence_from_dict_actions() -> None:
    assert PresenceMessage.from_dict({"action": 3}).action is PresenceAction.LEAVE
    unknown = PresenceMessage.from_dict({"action": 9})
    assert unknown.action == 9
    assert type(unknown.action) is int
    assert PresenceMessage.from_dict({}).action is PresenceAction.ABSENT
    assert PresenceMessage.from_dict({"action": "enter"}).action is PresenceAction.ABSENT
    assert PresenceMessage.from_dict({"timestamp": "x", "clientId": 1}).client_id is None


def test_presence_encoded_decoded_and_arrays() -> None:
    cipher = get_cipher(KEY)
    member = PresenceMessage(PresenceAction.UPDATE, client_id="c", data=["x"])
    wire = member.encoded(cipher).to_dict(binary=False)
    assert wire["encoding"] == "json/utf-8/cipher+aes-128-cbc/base64"
    (back,) = PresenceMessage.from_encoded_array([wire], cipher)
    assert back == member
    assert PresenceMessage.from_encoded(wire).decode_error is not None


def test_member_key_and_synthesized() -> None:
    member = PresenceMessage(
        PresenceAction.ENTER, id="conn:1:0", connection_id="conn", client_id="x"
    )
    assert member.member_key == "conn:x"
    assert not member.is_synthesized()
    assert PresenceMessage(id="other:1:0", connection_id="conn").is_synthesized()
    assert PresenceMessage(id=None, connection_id="conn").is_synthesized()
    assert PresenceMessage(id="conn:1:0", connection_id=None).is_synthesized()


def _member(msg_id: str | None, conn: str = "conn", ts: int | None = 100) -> PresenceMessage:
    return PresenceMessage(
        PresenceAction.PRESENT, id=msg_id, connection_id=conn, client_id="x", timestamp=ts
    )


@pytest.mark.parametrize(
    ("incoming", "existing", "newer"),
    [
        # RTP2b2: msgSerial compared as integers, not strings
        (_member("conn:10:0"), _member("conn:9:5"), True),
        (_member("conn:9:5"), _member("conn:10:0"), False),
        # same msgSerial: index decides
        (_member("conn:4:2"), _member("conn:4:1"), True),
        (_member("conn:4:1"), _member("conn:4:2"), False),
        # same position is not newer
        (_member("conn:4:1"), _member("conn:4:1"), False),
        # RTP2b1: a synthesized message on either side => timestamps
        (_member("srv:1:0", ts=200), _member("conn:9:0", ts=100), True),
        (_member("srv:1:0", ts=50), _member("conn:9:0", ts=100), False),
        (_member("conn:1:0", ts=100), _member(None, ts=150), False),
        # RTP2b1a: equal timestamps => the incoming message wins
        (_member("srv:1:0", ts=100), _member("conn:9:0", ts=100), True),
        # ids that do not parse fall back to timestamps
        (_member("conn:x:y", ts=300), _member("conn:1:0", ts=200), True),
        (_member("conn", ts=100), _member("conn:1:0", ts=200), False),
        (_member("srv:1", ts=None), _member("conn:1:0", ts=None), True),
    ],
)
def test_is_newer_than(incoming: PresenceMessage, existing: PresenceMessage, newer: bool) -> None:
    assert incoming.is_newer_than(existing) is newer


# -- ConnectionDetails --------------------------------------------------------

CONNECTED_DETAILS = {
    "clientId": None,
    "connectionKey": "hVh3Kz!abc-def",
    "maxMessageSize": 65536,
    "maxFrameSize": 524288,
    "maxInboundRate": 250,
    "maxOutboundRate": 100,
    "connectionStateTtl": 120000,
    "maxIdleInterval": 15000,
    "serverId": "frontdoor.x",
}


def test_connection_details_durations_are_seconds() -> None:
    details = ConnectionDetails.from_dict(CONNECTED_DETAILS)
    assert details.connection_state_ttl == 120.0
    assert details.max_idle_interval == 15.0
    assert details.max_inbound_rate == 250
    assert details.server_id == "frontdoor.x"
    assert details.client_id is None
    wire = details.to_dict()
    assert wire == {k: v for k, v in CONNECTED_DETAILS.items() if v is not None}
    assert ConnectionDetails.from_dict(wire) == details


def test_connection_details_defaults_and_extras() -> None:
    details = ConnectionDetails.from_dict({})
    assert details == ConnectionDetails()
    assert details.max_message_size == 65536
    assert details.max_frame_size == 524288
    assert details.connection_state_ttl == 120.0
    assert details.max_idle_interval == 15.0
    full = ConnectionDetails(
        client_id="c", site_code="eu", objects_gc_grace_period=86400.0, max_idle_interval=0.0
    )
    wire = full.to_dict()
    assert wire["objectsGCGracePeriod"] == 86400000
    assert wire["maxIdleInterval"] == 0
    assert ConnectionDetails.from_dict(wire) == full
    assert "secret" not in repr(ConnectionDetails(connection_key="secret"))


@pytest.mark.parametrize(
    "raw", [{"maxMessageSize": "big"}, {"connectionKey": 5}, {"connectionStateTtl": True}, []]
)
def test_connection_details_malformed(raw: Any) -> None:
    with pytest.raises(EncodingError):
        ConnectionDetails.from_dict(raw)


# -- ProtocolMessage ----------------------------------------------------------


def full_frame() -> ProtocolMessage:
    return ProtocolMessage(
        Action.MESSAGE,
        id="c1:5",
        channel="chat",
        channel_serial="serial-1",
        connection_id="c1",
        connection_key="c1!key",
        connection_details=ConnectionDetails(client_id="alice", connection_key="c1!key"),
        msg_serial=5,
        count=1,
        error=AblyException("boom", 50000, 500),
        flags=int(Flag.HAS_PRESENCE | Flag.RESUMED),
        timestamp=1700000000000,
        messages=[Message("a", "1"), Message("b", b"\x02", id="custom", timestamp=7)],
        presence=[PresenceMessage(PresenceAction.ENTER, client_id="x", data="d")],
        annotations=[{"type": "reaction"}],
        state=[{"object": 1}],
        auth={"accessToken": "super-secret-token"},
        params={"rewind": "1"},
        res=[{"serials": ["s1", None]}],
    )


def test_protocol_message_round_trip() -> None:
    frame = full_frame()
    frame.fill_defaults()
    for binary in (True, False):
        wire = frame.to_dict(binary=binary)
        assert wire["action"] == 15
        assert wire["flags"] == 5
        assert wire["channelSerial"] == "serial-1"
        assert wire["error"]["code"] == 50000
        assert wire["connectionDetails"]["clientId"] == "alice"
        back = ProtocolMessage.from_dict(wire)
        if not binary:  # JSON carries bytes as base64 text
            back.messages[1] = back.messages[1].decoded()
        assert back == frame


def test_protocol_message_minimal_wire_form() -> None:
    assert ProtocolMessage().to_dict(binary=True) == {"action": 0}
    assert ProtocolMessage(Action.ATTACH, channel="c").to_dict(binary=False) == {
        "action": 10,
        "channel": "c",
    }
    assert ProtocolMessage.from_dict({}) == ProtocolMessage(Action.HEARTBEAT)


def test_fill_defaults_from_the_enclosing_frame() -> None:
    frame = ProtocolMessage.from_dict(
        {
            "action": 15,
            "id": "conn:7",
            "connectionId": "conn",
            "timestamp": 1000,
            "messages": [{"name": "a"}, {"name": "b", "id": "mine", "timestamp": 5}],
            "presence": [{"action": 2, "clientId": "x"}, {"action": 2, "connectionId": "other"}],
        }
    )
    first, second = frame.messages
    assert (first.id, first.connection_id, first.timestamp) == (
        "conn:7:0",
        "conn",
        1000,
    )  # TM2a/c/f
    assert (second.id, second.connection_id, second.timestamp) == ("mine", "conn", 5)
    p0, p1 = frame.presence
    assert (p0.id, p0.connection_id, p0.timestamp) == ("conn:7:0", "conn", 1000)  # TP3a/d/g
    assert (p1.id, p1.connection_id) == ("conn:7:1", "other")


def test_fill_defaults_without_frame_values_changes_nothing() -> None:
    frame = ProtocolMessage.from_dict({"action": 15, "messages": [{"name": "a"}]})
    assert frame.messages[0] == Message("a")
    only_ts = ProtocolMessage.from_dict({"action": 15, "timestamp": 9, "messages": [{}]})
    assert only_ts.messages[0].id is None
    assert only_ts.messages[0].timestamp == 9


def test_has_flag() -> None:
    frame = ProtocolMessage(Action.ATTACHED, flags=int(Flag.HAS_PRESENCE | Flag.SUBSCRIBE))
    assert frame.has_flag(Flag.HAS_PRESENCE)
    assert frame.has_flag(Flag.SUBSCRIBE)
    assert not frame.has_flag(Flag.RESUMED)
    assert not frame.has_flag(Flag.HAS_PRESENCE | Flag.RESUMED)
    assert not frame.has_flag(0)


def test_repr_hides_connection_key_and_token() -> None:
    text = repr(full_frame())
    assert "super-secret-token" not in text
    assert "c1!key" not in text
    assert "chat" in text


def test_from_dict_parses_nested_objects() -> None:
    frame = ProtocolMessage.from_dict(
        {
            "action": 6,
            "error": {"code": 40142, "statusCode": 401, "message": "Token expired"},
            "params": {"rewind": 1, "delta": "vcdiff"},
            "auth": {"accessToken": "t"},
            "connectionDetails": {"connectionStateTtl": 60000},
            "msgSerial": 3.0,
            "unknownField": {"ignored": True},
        }
    )
    assert frame.action is Action.DISCONNECTED
    assert isinstance(frame.error, TokenError)
    assert frame.error.code == 40142
    assert frame.params == {"rewind": "1", "delta": "vcdiff"}
    assert frame.auth == {"accessToken": "t"}
    assert frame.connection_details is not None
    assert frame.connection_details.connection_state_ttl == 60.0
    assert frame.msg_serial == 3
    unknown = ProtocolMessage.from_dict({"action": 42, "messages": ({"name": "t"},)})
    assert unknown.action == 42
    assert type(unknown.action) is int
    assert unknown.messages == [Message("t")]


@pytest.mark.parametrize(
    "raw",
    [
        {"action": "15"},
        {"action": True},
        {"action": 1.5},
        {"flags": "1"},
        {"id": 5},
        {"msgSerial": float("nan")},
        {"messages": {}},
        {"messages": [1]},
        {"presence": "x"},
        {"presence": [None]},
        {"error": "x"},
        {"connectionDetails": 1},
        {"connectionDetails": {"maxFrameSize": "x"}},
        {"params": []},
        {"params": {1: "x"}},
        {"auth": "token"},
        {"res": [1]},
        {"res": {}},
        {"annotations": "x"},
        {"state": [[]]},
        {1: "int key"},
        ["not", "a", "map"],
    ],
)
def test_malformed_frames_raise_encoding_error(raw: Any) -> None:
    with pytest.raises(EncodingError) as caught:
        ProtocolMessage.from_dict(raw)
    assert caught.value.code == 40013


def test_json_transport_bytes_are_decoded_back() -> None:
    frame = ProtocolMessage(Action.MESSAGE, messages=[Message(data=b"\x00\x01")])
    wire = frame.to_dict(binary=False)
    assert wire["messages"][0] == {"data": "AAE=", "encoding": "base64"}
    back = ProtocolMessage.from_dict(wire).messages[0].decoded()
    assert back.data == b"\x00\x01"
    assert base64.b64decode(wire["messages"][0]["data"]) == b"\x00\x01"
