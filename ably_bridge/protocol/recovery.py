"""Connection recovery keys (RTN16g): build and parse the string ``createRecoveryKey`` returns.

The format is SDK-private (RTN16g1) but ably-js and ably-go agree on JSON::

    {"connectionKey": "...", "msgSerial": 5, "channelSerials": {"chat": "<serial>"}}

JSON encodes any unicode channel name. :func:`parse_recovery_key` returns
``None`` for anything malformed; the caller logs it and connects as if no
``recover`` option had been given (RTN16f1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecoveryKey", "parse_recovery_key"]


@dataclass(frozen=True, slots=True)
class RecoveryKey:
    """What a recovering client needs: the connection key, msgSerial and channel serials."""

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

    def __repr__(self) -> str:
        # The connection key is a secret that lets anyone take over the connection.
        return (
            f"RecoveryKey(connection_key=<redacted>, msg_serial={self.msg_serial}, "
            f"channels={sorted(self.channel_serials)})"
        )


def parse_recovery_key(text: str | None) -> RecoveryKey | None:
    """Parse a recovery key; ``None`` if it is absent or malformed (RTN16f1)."""
    if not text:
        return None
    try:
        raw: Any = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    key = raw.get("connectionKey")
    serial = raw.get("msgSerial")
    serials = raw.get("channelSerials", {})
    if not isinstance(key, str) or not key:
        return None
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        return None
    if not isinstance(serials, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in serials.items()
    ):
        return None
    return RecoveryKey(key, serial, dict(serials))
