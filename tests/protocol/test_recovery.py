"""Recovery keys (RTN16g, RTN16f1): RecoveryKeyContext, encode, and a decode that raises."""

from __future__ import annotations

import json

import pytest

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.recovery import RecoveryKeyContext, decode_recovery_key

from .harness import Harness, options


def test_rtn16g_encodes_key_serial_and_channels() -> None:
    key = RecoveryKeyContext("ck!1", 5, {"chat": "s1", "ünï:cödé": "s2"})
    raw = json.loads(key.encode())
    assert raw == {
        "connectionKey": "ck!1",
        "msgSerial": 5,
        "channelSerials": {"chat": "s1", "ünï:cödé": "s2"},
    }
    assert decode_recovery_key(key.encode()) == key
    assert RecoveryKeyContext.decode(key.encode()) == key


def test_repr_hides_the_connection_key() -> None:
    assert "ck!1" not in repr(RecoveryKeyContext("ck!1", 0))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "non-empty string"),
        ("", "non-empty string"),
        ("not json", "not JSON"),
        ("[" * 100_000, "nested too deeply"),
        ("[]", "not a JSON object"),
        ('{"msgSerial": 1}', "connectionKey"),
        ('{"connectionKey": "", "msgSerial": 1}', "connectionKey"),
        ('{"connectionKey": "k", "msgSerial": -1}', "msgSerial"),
        ('{"connectionKey": "k", "msgSerial": true}', "msgSerial"),
        ('{"connectionKey": "k", "msgSerial": "1"}', "msgSerial"),
        ('{"connectionKey": "k", "msgSerial": 1, "channelSerials": []}', "channelSerials"),
        ('{"connectionKey": "k", "msgSerial": 1, "channelSerials": {"a": 1}}', "channelSerials"),
    ],
)
def test_malformed_keys_raise_a_clear_error(text: str | None, reason: str) -> None:
    with pytest.raises(AblyException) as raised:
        decode_recovery_key(text)  # type: ignore[arg-type]
    error = raised.value
    assert error.code == ErrorCode.INVALID_PARAMETER_VALUE and error.status_code == 400
    assert error.message.startswith("invalid recovery key: ") and reason in error.message


def test_the_error_never_shows_the_key() -> None:
    secret = '{"connectionKey": "SECRET-conn-key", "msgSerial": "x"}'
    with pytest.raises(AblyException) as raised:
        decode_recovery_key(secret)
    assert "SECRET" not in str(raised.value)


def test_channel_serials_default_to_empty() -> None:
    key = decode_recovery_key('{"connectionKey": "k", "msgSerial": 2}')
    assert key == RecoveryKeyContext("k", 2, {})


def test_rtn16f1_a_malformed_recover_option_is_reported_and_ignored() -> None:
    h = Harness(options(recover="garbage"))
    assert h.core.recover_error is not None and "not JSON" in h.core.recover_error.message
    h.connect()
    assert "recover" not in h.opens()[-1].params
    assert Harness(options(recover=None)).core.recover_error is None
