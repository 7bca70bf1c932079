"""Envelope: the Ably Integrations JSON shape for messages, presence and lifecycle."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from ably_bridge.encoding.crypto import get_cipher, get_default_params
from ably_bridge.envelope import EnvelopeBuilder, UndecodableEvent
from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import PresenceAction
from ably_bridge.protocol.models import Message, PresenceMessage

B = EnvelopeBuilder("appX", "local-1")
KEY = bytes(range(32))

WIRE_MESSAGE = {
    "id": "conn1:3:0",
    "name": "greeting",
    "clientId": "bob",
    "connectionId": "conn1",
    "timestamp": 1700000000123,
    "data": '{"text":"hi","n":1}',
    "encoding": "json",
    "extras": {"headers": {"k": "v"}},
}


def test_message_envelope_decoded_golden() -> None:
    env = B.message("chat:1", Message.from_dict(WIRE_MESSAGE), "chat")
    assert env.to_dict() == {
        "source": "channel.message",
        "appId": "appX",
        "channel": "chat:1",
        "site": "local-1",
        "ruleId": "chat",
        "timestamp": 1700000000123,
        "messages": [
            {
                "id": "conn1:3:0",
                "name": "greeting",
                "clientId": "bob",
                "connectionId": "conn1",
                "timestamp": 1700000000123,
                "data": {"text": "hi", "n": 1},
                "extras": {"headers": {"k": "v"}},
            }
        ],
    }
    assert json.loads(env.to_json()) == env.to_dict()
    assert env.event_id == "conn1:3:0" and env.dedup_key == "m:conn1:3:0"
    assert env.name == "greeting" and env.short_source == "message"


def test_message_envelope_encoded_keeps_wire_data() -> None:
    env = B.message("chat:1", Message.from_dict(WIRE_MESSAGE), "chat", mode="encoded")
    item = env.to_dict()["messages"][0]
    assert item["data"] == '{"text":"hi","n":1}' and item["encoding"] == "json"
    # Data the client library already decoded is re-encoded JSON-safely.
    decoded = Message.from_dict(WIRE_MESSAGE).decoded()
    item = B.message("c", decoded, "r", mode="encoded").to_dict()["messages"][0]
    assert item["data"] == '{"text":"hi","n":1}' and item["encoding"] == "json"


def test_binary_data_becomes_base64_in_both_modes() -> None:
    msg = Message("bin", b"\x00\x01\xff", id="c:1:0", timestamp=5)
    for mode in ("decoded", "encoded"):
        item = B.message("c", msg, "r", mode=mode).to_dict()["messages"][0]  # type: ignore[arg-type]
        assert item["data"] == "AAH/" and item["encoding"] == "base64"
    wire = {"id": "c:1:0", "data": "AAH/", "encoding": "base64", "timestamp": 5}
    decoded = B.message("c", Message.from_dict(wire), "r").to_dict()["messages"][0]
    assert decoded["data"] == "AAH/" and decoded["encoding"] == "base64"


def test_encrypted_message_decoded_with_route_cipher_or_undecodable() -> None:
    cipher = get_cipher(get_default_params(key=KEY))
    wire = Message("secret", "plain text", id="c:2:0", timestamp=7).encoded(cipher)
    raw = Message.from_dict(wire.to_dict(binary=False))
    assert raw.encoding == "utf-8/cipher+aes-256-cbc/base64"
    env = B.message("c", raw, "r", cipher=cipher)
    assert env.item["data"] == "plain text" and "encoding" not in env.item
    with pytest.raises(UndecodableEvent) as info:
        B.message("c", raw, "r")
    assert info.value.code == 40013 or info.value.code >= 40000
    # Encoded mode passes the ciphertext on with its encoding.
    enc = B.message("c", raw, "r", mode="encoded").item
    assert enc["encoding"] == "utf-8/cipher+aes-256-cbc/base64" and enc["data"] == raw.data


def test_message_the_client_failed_to_decode_is_undecodable() -> None:
    msg = Message.from_dict({"id": "c:1:0", "data": "###", "encoding": "base64"}).decoded()
    assert msg.decode_error is not None
    with pytest.raises(UndecodableEvent):
        B.message("c", msg, "r")
    assert B.message("c", msg, "r", mode="encoded").item["encoding"] == "base64"


def test_v4_fields_and_missing_timestamp() -> None:
    msg = Message("n", "d", id="c:1:0", serial="01700000000000-000@abc:000", action=0)
    env = B.message("c", msg, "r", now_ms=42)
    assert env.item["serial"] == "01700000000000-000@abc:000" and env.item["action"] == 0
    assert env.serial == "01700000000000-000@abc:000"
    assert env.timestamp == 42 and env.item["timestamp"] == 42


def test_message_without_id_gets_a_deterministic_one() -> None:
    a = B.message("c", Message("n", "d", timestamp=1), "r")
    b = B.message("c", Message("n", "d", timestamp=1), "r")
    assert a.event_id == b.event_id and a.event_id.startswith("sha256:")
    assert "id" not in a.item


def test_presence_envelope_golden() -> None:
    wire = {
        "id": "conn2:7:1",
        "action": 2,
        "clientId": "alice",
        "connectionId": "conn2",
        "timestamp": 1700000000999,
        "data": "hello",
    }
    env = B.presence("room", PresenceMessage.from_dict(wire), "pres")
    assert env.to_dict() == {
        "source": "channel.presence",
        "appId": "appX",
        "channel": "room",
        "site": "local-1",
        "ruleId": "pres",
        "timestamp": 1700000000999,
        "presence": [
            {
                "id": "conn2:7:1",
                "clientId": "alice",
                "connectionId": "conn2",
                "timestamp": 1700000000999,
                "data": "hello",
                "action": 2,
            }
        ],
    }
    assert env.dedup_key == "p:conn2:7:1"
    leave = B.presence("room", PresenceMessage(PresenceAction.LEAVE, id="x:1:0"), "pres")
    assert leave.item["action"] == 3 and isinstance(leave.item["action"], int)


def test_lifecycle_envelope_golden() -> None:
    reason = AblyException("detached by server", 90198, 500)
    env = B.lifecycle(
        "room",
        "DETACHED",
        "life",
        now_ms=1700000001000,
        previous="attached",
        current="detached",
        reason=reason,
        resumed=False,
    )
    assert env.to_dict() == {
        "source": "channel.lifecycle",
        "appId": "appX",
        "channel": "room",
        "site": "local-1",
        "ruleId": "life",
        "timestamp": 1700000001000,
        "name": "channel.detached",
        "data": {
            "channelId": "room",
            "name": "room",
            "status": {"isActive": False},
            "current": "detached",
            "previous": "attached",
            "resumed": False,
            "reason": reason.to_dict(),
        },
    }
    attached = B.lifecycle("room", "attached", "life", now_ms=1)
    assert attached.name == "channel.attached"
    assert attached.item["status"] == {"isActive": True}
    assert attached.dedup_key.startswith("l:")
    with pytest.raises(AblyException):
        B.lifecycle("room", "exploded", "life", now_ms=1)


def test_flat_fields_are_strings() -> None:
    env = B.message("chat:1", Message.from_dict(WIRE_MESSAGE), "chat")
    flat = env.flat_fields()
    assert flat == {
        "source": "channel.message",
        "appId": "appX",
        "channel": "chat:1",
        "site": "local-1",
        "ruleId": "chat",
        "timestamp": "1700000000123",
        "id": "conn1:3:0",
        "name": "greeting",
        "clientId": "bob",
        "connectionId": "conn1",
        "data": '{"text":"hi","n":1}',
        "extras": '{"headers":{"k":"v"}}',
        "encoding": "json",
    }
    pres = B.presence("room", PresenceMessage(4, id="p:1:0", timestamp=3, data="x"), "r")
    assert pres.flat_fields()["action"] == "4" and "encoding" not in pres.flat_fields()
    life = B.lifecycle("room", "failed", "r", now_ms=9).flat_fields()
    assert life["name"] == "channel.failed" and json.loads(life["data"])["current"] == "failed"


def test_json_is_cached_and_size_counts_utf8_bytes() -> None:
    env = B.message("c", Message("n", "héllo", id="c:1:0", timestamp=1), "r")
    assert env.to_json() is env.to_json()
    assert env.size() == len(env.to_json().encode("utf-8"))
    assert "héllo" in env.to_json()


def test_compact_json_is_what_json_dumps_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from ably_bridge.envelope import encode as envelope_module

    values: list[Any] = [
        {"id": "c:1:0", "data": 'héllo \u2028 "q"', "n": 1.5, "t": True, "z": None},
        ["a", 2, {"nested": [1, {}]}],
        "plain",
        -3,
    ]
    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    fallback = envelope_module._compact_dumps()  # no C accelerator: the encoder's own method
    assert fallback != envelope_module.dumps
    for dumps in (envelope_module.dumps, fallback):
        for value in values:
            assert dumps(value) == reference.encode(value)
        with pytest.raises(ValueError, match="JSON compliant"):
            dumps({"v": math.nan})
        with pytest.raises(TypeError, match="not JSON serializable"):
            dumps({"v": object()})
