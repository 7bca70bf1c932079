"""The public recovery API: RecoveryKeyContext, decode_recovery_key, channels.channel_serials()."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.realtime import RecoveryKeyContext, decode_recovery_key

from .conftest import Collector, MakeClient


def test_channel_serials_and_the_recovery_key_agree(make_client: MakeClient) -> None:
    client = make_client()
    received = Collector()
    attached = client.channels.get("serials-a")
    attached.subscribe(received)
    attached.publish("m", "one")
    received.wait_for(1)
    client.channels.get("serials-b")  # never attached: no serial
    serials = client.channels.channel_serials()
    assert serials == {"serials-a": attached.properties.channel_serial}
    key = client.connection.create_recovery_key()
    assert key is not None
    context = decode_recovery_key(key)
    assert context.connection_key == client.connection.key
    assert context.channel_serials == serials
    assert context.msg_serial == 1  # one publish was sent
    assert RecoveryKeyContext.decode(context.encode()) == context


def test_a_recovered_client_takes_the_serials_and_connection(make_client: MakeClient) -> None:
    first = make_client()
    channel = first.channels.get("recover-me")
    channel.subscribe(lambda _m: None)
    key = first.connection.create_recovery_key()
    assert key is not None
    connection_id = first.connection.id
    context = RecoveryKeyContext.decode(key)
    second = make_client(recover=context.encode(), auto_connect=False)
    second.connect()
    assert second.connection.id == connection_id  # RTN16l
    second.channels.get("recover-me").attach()
    assert set(second.channels.channel_serials()) == {"recover-me"}


def test_decode_raises_for_a_malformed_key() -> None:
    with pytest.raises(AblyException) as raised:
        decode_recovery_key('{"connectionKey": 5}')
    assert raised.value.code == ErrorCode.INVALID_PARAMETER_VALUE
