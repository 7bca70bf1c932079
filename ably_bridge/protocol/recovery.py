"""Connection recovery keys (RTN16g): :class:`RecoveryKeyContext`, its encoding and decoding.

The format is SDK-private (RTN16g1) but ably-js and ably-go agree on JSON::

    {"connectionKey": "...", "msgSerial": 5, "channelSerials": {"chat": "<serial>"}}

JSON encodes any unicode channel name. :func:`decode_recovery_key` raises an
:class:`~ably_bridge.errors.AblyException` (40003) that says what is wrong
with a malformed key, never showing the key (it is a secret: it lets its
holder take over the connection). The realtime client, given a malformed
``recover`` option, logs that error and connects as if none had been given
(RTN16f1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.errors import AblyException, ErrorCode

__all__ = ["RecoveryKeyContext", "decode_recovery_key"]


@dataclass(frozen=True, slots=True)
class RecoveryKeyContext:
    """What a recovering client needs: the connection key, msgSerial and channel serials.

    The Go SDK's ``RecoveryKeyContext``; :meth:`encode` gives the string that
    ``connection.create_recovery_key()`` returns and the ``recover`` option takes.
    """

    connection_key: str
    msg_serial: int
    channel_serials: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        """The recovery key string (RTN16g)."""
        return json.dumps(
            {
                "connectionKey": self.connection_key,
                "msgSerial": self.msg_serial,
                "channelSerials": dict(self.channel_serials),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, text: str) -> RecoveryKeyContext:
        """:func:`decode_recovery_key`."""
        return decode_recovery_key(text)

    def __repr__(self) -> str:
        # The connection key is a secret that lets anyone take over the connection.
        return (
            f"RecoveryKeyContext(connection_key=<redacted>, msg_serial={self.msg_serial}, "
            f"channels={sorted(self.channel_serials)})"
        )


def _invalid(reason: str) -> AblyException:
    return AblyException(f"invalid recovery key: {reason}", ErrorCode.INVALID_PARAMETER_VALUE, 400)


def decode_recovery_key(text: str) -> RecoveryKeyContext:
    """Parse a recovery key (RTN16g); raise 40003 saying what is wrong if it is malformed."""
    if not isinstance(text, str) or not text:
        raise _invalid("expected a non-empty string")
    try:
        raw: Any = json.loads(text)
    except ValueError:
        raise _invalid("not JSON") from None
    except RecursionError:
        raise _invalid("nested too deeply") from None
    if not isinstance(raw, dict):
        raise _invalid("not a JSON object")
    key = raw.get("connectionKey")
    serial = raw.get("msgSerial")
    serials = raw.get("channelSerials", {})
    if not isinstance(key, str) or not key:
        raise _invalid("connectionKey must be a non-empty string")
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise _invalid("msgSerial must be a non-negative integer")
    if not isinstance(serials, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in serials.items()
    ):
        raise _invalid("channelSerials must map channel names to serial strings")
    return RecoveryKeyContext(key, serial, dict(serials))
