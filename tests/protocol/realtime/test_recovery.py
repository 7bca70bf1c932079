"""Recovery keys (RTN16g, RTN16f1)."""

from __future__ import annotations

import json

import pytest

from ably_bridge.protocol.recovery import RecoveryKey, parse_recovery_key


def test_rtn16g_encodes_key_serial_and_channels() -> None:
    key = RecoveryKey("ck!1", 5, {"chat": "s1", "ünï:cödé": "s2"})
    raw = json.loads(key.encode())
    assert raw == {
        "connectionKey": "ck!1",
        "msgSerial": 5,
        "channelSerials": {"chat": "s1", "ünï:cödé": "s2"},
    }
    assert parse_recovery_key(key.encode()) == key


def test_repr_hides_the_connection_key() -> None:
    assert "ck!1" not in repr(RecoveryKey("ck!1", 0))


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        '{"msgSerial": 1}',
        '{"connectionKey": "", "msgSerial": 1}',
        '{"connectionKey": "k", "msgSerial": -1}',
        '{"connectionKey": "k", "msgSerial": true}',
        '{"connectionKey": "k", "msgSerial": "1"}',
        '{"connectionKey": "k", "msgSerial": 1, "channelSerials": []}',
        '{"connectionKey": "k", "msgSerial": 1, "channelSerials": {"a": 1}}',
    ],
)
def test_rtn16f1_malformed_keys_parse_as_none(text: str | None) -> None:
    assert parse_recovery_key(text) is None


def test_channel_serials_default_to_empty() -> None:
    assert parse_recovery_key('{"connectionKey": "k", "msgSerial": 2}') == RecoveryKey("k", 2, {})
