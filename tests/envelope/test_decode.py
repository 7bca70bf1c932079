"""Envelope decoding: both stream layouts and every source read back what the encoder wrote."""

from __future__ import annotations

from typing import Any

from ably_bridge.envelope import EnvelopeBuilder, decode_envelope, envelope_from_fields
from ably_bridge.protocol.models import Message, PresenceMessage


def built(data: Any, *, msg_id: str = "abc:0") -> Any:
    message = Message("greet", data, id=msg_id, client_id="me", extras={"headers": {"a": "1"}})
    message.timestamp = 1_700_000_000_000
    return EnvelopeBuilder("app1", "local").message("chan", message, "route-1")


def test_both_stream_layouts_decode_to_the_same_events() -> None:
    for data in ("text", {"k": [1, 2]}, b"\x00\xff"):
        env = built(data)
        from_json = decode_envelope(envelope_from_fields({b"envelope": env.to_json().encode()}))
        from_flat = decode_envelope(envelope_from_fields(env.flat_fields()))
        for events in (from_json, from_flat):
            (event,) = events
            assert event.data == data and event.encoding is None
            assert (event.id, event.name, event.client_id) == ("abc:0", "greet", "me")
            assert event.extras == {"headers": {"a": "1"}} and event.channel == "chan"
            assert event.dedup_key == env.dedup_key == "m:abc:0"


def test_presence_and_lifecycle_envelopes() -> None:
    builder = EnvelopeBuilder("app1", "local")
    presence = PresenceMessage(2, id="c:1:0", client_id="bob", data="hi", timestamp=5)
    (event,) = decode_envelope(builder.presence("chan", presence, "r").to_dict())
    assert (event.action, event.client_id, event.dedup_key) == (2, "bob", "p:c:1:0")
    life = builder.lifecycle("chan", "attached", "r", now_ms=9)
    (lifecycle,) = decode_envelope(envelope_from_fields(life.flat_fields()))
    assert lifecycle.name == "channel.attached" and lifecycle.dedup_key == life.dedup_key
