"""Channels, publish (RSL1, idempotency RSL1k), history (RSL2), presence (RSP), status (RSL8)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from ably_bridge.encoding.crypto import generate_random_key, get_cipher
from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message, PresenceMessage
from ably_bridge.protocol.tokens import TokenDetails
from ably_bridge.transports.mock_http import MockHttpTransport
from tests.rest.conftest import PRIMARY, MakeRest

PUBLISH = "/channels/ch/messages"


def ok(mock: MockHttpTransport, path: str = PUBLISH) -> None:
    mock.add(
        method="POST",
        path=path,
        status=201,
        json={"channel": "ch", "messageId": "m", "serials": ["s0"]},
    )


# -- collection (RSN) -----------------------------------------------------------------
def test_channels_collection(make_rest: MakeRest) -> None:
    rest = make_rest()
    channel = rest.channels.get("a")
    assert rest.channels.get("a") is channel and rest.channels["a"] is channel  # RSN3a
    assert rest.channels.exists("a") and "a" in rest.channels and "b" not in rest.channels  # RSN2
    rest.channels.get("b")
    assert (
        {c.name for c in rest.channels} == {"a", "b"} == {c.name for c in rest.channels.iterate()}
    )
    rest.channels.release("a")  # RSN4a
    rest.channels.release("never")  # RSN4b
    assert not rest.channels.exists("a") and len(rest.channels) == 1
    assert rest.channels.get("a") is not channel
    assert channel.presence is channel.presence  # RSP1b


def test_get_with_options_updates_existing(make_rest: MakeRest) -> None:
    rest = make_rest()
    channel = rest.channels.get("a")
    assert channel.cipher is None
    again = rest.channels.get("a", cipher=generate_random_key(), params={"rewind": "1"})
    assert again is channel
    assert again.cipher is not None
    assert again.params == {"rewind": "1"}


def test_bad_channel_name(make_rest: MakeRest) -> None:
    with pytest.raises(AblyException) as info:
        make_rest().channels.get("")
    assert info.value.code == 40010


# -- publish ---------------------------------------------------------------------------
def test_publish_name_and_data(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    ok(mock)
    result = make_rest(use_binary_protocol=False).channels.get("ch").publish("greet", "hi")
    body = mock.last.decoded_body()
    assert body["name"] == "greet" and body["data"] == "hi"  # RSL1a, RSL1b
    assert result.serials == ["s0"] and result.message_id == "m"  # RSL1n
    assert mock.last.path == PUBLISH and mock.last.method == "POST"


def test_publish_messages_array_extras_client_id_params(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    ok(mock)
    rest = make_rest(use_binary_protocol=False)
    messages = [
        Message("a", {"x": 1}, extras={"headers": {"h": "v"}}, client_id="me"),
        Message("b", None, connection_key="ck"),
    ]
    rest.channels.get("ch").publish(messages=messages, params={"quickAck": True})
    body = mock.last.decoded_body()
    assert isinstance(body, list) and len(body) == 2  # RSL1c
    assert body[0]["data"] == '{"x":1}' and body[0]["encoding"] == "json"
    assert body[0]["extras"] == {"headers": {"h": "v"}} and body[0]["clientId"] == "me"
    assert body[1]["connectionKey"] == "ck" and "data" not in body[1]  # RSL1e
    assert mock.last.query == {"quickAck": "true"}  # RSL1l


def test_publish_single_message_object_and_keywords(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    ok(mock)
    ok(mock)
    channel = make_rest(use_binary_protocol=False).channels.get("ch")
    channel.publish(Message("m", "d"))
    assert mock.last.decoded_body()["name"] == "m"
    channel.publish("n", "d", extras={"push": {"a": 1}}, client_id="c", id="own-id")
    body = mock.last.decoded_body()
    assert body["extras"] == {"push": {"a": 1}} and body["id"] == "own-id"


def test_idempotent_ids(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    ok(mock)
    ok(mock)
    channel = make_rest(use_binary_protocol=False).channels.get("ch")
    channel.publish(messages=[Message("a", "1"), Message("b", "2"), Message("c", "3")])
    ids = [m["id"] for m in mock.last.decoded_body()]
    base = ids[0].split(":")[0]
    assert ids == [f"{base}:0", f"{base}:1", f"{base}:2"]  # RSL1k1
    assert len(base64.urlsafe_b64decode(base + "=" * (-len(base) % 4))) >= 9
    channel.publish("x", "1")
    assert mock.last.decoded_body()["id"].split(":")[0] != base  # RSL1k3: new base each time


def test_idempotent_ids_disabled_and_client_ids_kept(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    ok(mock)
    ok(mock)
    make_rest(use_binary_protocol=False, idempotent_rest_publishing=False).channels.get(
        "ch"
    ).publish("a", "1")
    assert "id" not in mock.last.decoded_body()
    make_rest(use_binary_protocol=False).channels.get("ch").publish(
        messages=[Message("a", "1", id="mine"), Message("b", "2")]
    )
    assert [m.get("id") for m in mock.last.decoded_body()] == ["mine", None]  # RSL1k3


def test_same_ids_on_fallback_retry(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host=PRIMARY, path=PUBLISH, status=500)
    ok(mock)
    make_rest().channels.get("ch").publish(messages=[Message("a", "1"), Message("b", "2")])
    assert len(mock.requests) == 2
    first, second = (r.decoded_body() for r in mock.requests)
    assert [m["id"] for m in first] == [m["id"] for m in second]  # RSL1k2
    assert mock.requests[0].body == mock.requests[1].body


def test_publish_binary_json_and_msgpack(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    ok(mock)
    ok(mock)
    make_rest(use_binary_protocol=False).channels.get("ch").publish("b", b"\x01\x02")
    body = mock.last.decoded_body()
    assert body["data"] == "AQI=" and body["encoding"] == "base64"
    make_rest().channels.get("ch").publish("b", b"\x01\x02")
    body = mock.last.decoded_body()
    assert body["data"] == b"\x01\x02" and "encoding" not in body


def test_publish_encrypted(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    ok(mock)
    key = generate_random_key(256)
    make_rest(use_binary_protocol=False).channels.get("ch", cipher=key).publish("secret", "plain")
    body = mock.last.decoded_body()
    assert body["encoding"] == "utf-8/cipher+aes-256-cbc/base64"
    assert body["data"] != "plain"
    decoded = Message.from_encoded(body, get_cipher(key))
    assert decoded.data == "plain" and decoded.encoding is None


def test_publish_size_limit(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    with pytest.raises(AblyException) as info:
        make_rest(max_message_size=10).channels.get("ch").publish("n", "x" * 20)
    assert info.value.code == 40009  # RSL1i
    assert mock.requests == []


def test_publish_client_id_mismatch(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    channel = make_rest(client_id="alice").channels.get("ch")
    with pytest.raises(AblyException) as info:
        channel.publish(Message("n", "d", client_id="bob"))
    assert info.value.code == 40012
    ok(mock)
    wildcard = make_rest(token_details=TokenDetails(token="t", client_id="*"))
    wildcard.channels.get("ch").publish(Message("n", "d", client_id="bob"))  # allowed
    assert mock.last.decoded_body()["clientId"] == "bob"


def test_library_client_id_not_copied_into_messages(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    ok(mock)
    make_rest(client_id="alice").channels.get("ch").publish("n", "d")
    assert "clientId" not in mock.last.decoded_body()  # RSL1m


def test_publish_invalid_data_type(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    with pytest.raises(AblyException) as info:
        make_rest().channels.get("ch").publish("n", object())
    assert info.value.code == 40013
    assert mock.requests == []


def test_channel_name_is_url_encoded(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(json=[])
    make_rest().channels.get("ns:a/b c").history()
    assert mock.last.url.split("?")[0].endswith("/channels/ns%3Aa%2Fb%20c/messages")


# -- history (RSL2) ----------------------------------------------------------------------
def test_history_params_and_decoding(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    key = generate_random_key(128)
    cipher = get_cipher(key)
    encrypted = Message("e", {"k": "v"}).encoded(cipher).to_dict(binary=False)
    mock.add(
        path="/channels/ch/messages",
        json=[
            {"id": "1", "name": "s", "data": "text"},
            {"id": "2", "data": "AQI=", "encoding": "base64"},
            {"id": "3", "data": '{"a":1}', "encoding": "json"},
            encrypted,
        ],
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    page = (
        make_rest()
        .channels.get("ch", cipher=key)
        .history(start=start, end=1_704_067_300_000, direction="forwards", limit=10)
    )
    assert mock.last.query == {
        "start": "1704067200000",
        "end": "1704067300000",
        "direction": "forwards",
        "limit": "10",
    }
    assert [m.data for m in page.items] == ["text", b"\x01\x02", {"a": 1}, {"k": "v"}]
    assert all(isinstance(m, Message) for m in page.items)


def test_history_defaults_send_no_params(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(json=[])
    page = make_rest().channels.get("ch").history()
    assert mock.last.query == {} and page.items == [] and page.is_last()


@pytest.mark.parametrize(
    "kwargs", [{"limit": 1001}, {"limit": 0}, {"direction": "sideways"}, {"start": 5, "end": 1}]
)
def test_history_bad_arguments(
    make_rest: MakeRest, mock: MockHttpTransport, kwargs: dict[str, object]
) -> None:
    with pytest.raises(AblyException) as info:
        make_rest().channels.get("ch").history(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == 40003
    assert mock.requests == []


def test_undecodable_message_is_delivered_with_error(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(json=[{"data": "AAAA", "encoding": "cipher+aes-128-cbc/base64"}])
    page = make_rest().channels.get("ch").history()  # no cipher configured
    item = page.items[0]
    assert item.encoding == "cipher+aes-128-cbc" and item.decode_error is not None  # RSL6b


def test_channel_params_sent_with_history(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(json=[])
    make_rest().channels.get("ch", params={"p": "1"}).history(limit=5)
    assert mock.last.query == {"p": "1", "limit": "5"}


# -- presence (RSP3, RSP4) ---------------------------------------------------------------------
def test_presence_get(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/channels/ch/presence",
        json=[
            {
                "action": 1,
                "clientId": "a",
                "connectionId": "c",
                "data": '{"x":1}',
                "encoding": "json",
            }
        ],
    )
    page = make_rest().channels.get("ch").presence.get(limit=50, client_id="a", connection_id="c")
    assert mock.last.query == {"limit": "50", "clientId": "a", "connectionId": "c"}
    member = page.items[0]
    assert (
        isinstance(member, PresenceMessage) and member.client_id == "a" and member.data == {"x": 1}
    )
    assert int(member.action) == 1


def test_presence_history(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/channels/ch/presence/history", json=[{"action": 2, "clientId": "a"}])
    page = make_rest().channels.get("ch").presence.history(direction="backwards", limit=2)
    assert mock.last.query == {"direction": "backwards", "limit": "2"}
    assert page.items[0].client_id == "a"
    with pytest.raises(AblyException):
        make_rest().channels.get("ch").presence.get(limit=1001)  # RSP3a1c


def test_status(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/channels/ch",
        json={
            "channelId": "ch",
            "status": {"isActive": True, "occupancy": {"metrics": {"connections": 2}}},
        },
    )
    details = make_rest().channels.get("ch").status()
    assert details.channel_id == "ch"
    assert details.status.is_active and details.status.metrics == {"connections": 2}
    assert mock.last.method == "GET"
