"""``ChannelOptions(decode=False)``: payloads delivered as they travelled (both formats)."""

from __future__ import annotations

from ably_bridge.encoding.crypto import generate_random_key, get_default_params
from ably_bridge.protocol.models import Message
from ably_bridge.realtime import ChannelOptions

from .conftest import Collector, MakeClient


def test_decode_false_keeps_the_encoding_of_messages_and_presence(
    make_client: MakeClient,
) -> None:
    params = get_default_params(key=generate_random_key(128))
    sender = make_client(client_id="sender")
    raw_reader = make_client()
    decoding_reader = make_client()
    name = "undecoded"
    raw = raw_reader.channels.get(name, ChannelOptions(decode=False))
    decoding = decoding_reader.channels.get(name, ChannelOptions(cipher=params))
    raw_messages, decoded_messages, raw_members = Collector(), Collector(), Collector()
    raw.subscribe(raw_messages)
    decoding.subscribe(decoded_messages)
    raw.presence.subscribe(raw_members)
    raw.attach()
    decoding.attach()
    out = sender.channels.get(name, ChannelOptions(cipher=params))
    out.publish("secret", {"n": 1})
    out.presence.enter("here")

    (plain,) = decoded_messages.wait_for(1)
    assert plain.data == {"n": 1}
    assert plain.encoding is None
    (kept,) = raw_messages.wait_for(1)
    assert kept.encoding is not None
    assert "cipher+aes-128-cbc" in kept.encoding
    assert kept.decode_error is None  # nothing was attempted, so nothing failed
    assert Message.from_encoded(kept.to_dict(binary=False), params).data == {"n": 1}
    (member,) = raw_members.wait_for(1)
    assert member.encoding is not None
    assert "cipher+aes-128-cbc" in member.encoding
    (listed,) = raw.presence.get()
    assert listed.encoding == member.encoding
