"""The realtime connection core, sans I/O: :class:`ConnectionCore` and its transition table.

See :mod:`.core` for the inputs and effects, :mod:`.table` for the states and
the one checked place they change.
"""

from ably_bridge.protocol.connection.core import PROTOCOL_VERSION, ConnectionCore
from ably_bridge.protocol.connection.table import (
    TRANSITIONS,
    ConnectionStateMachine,
    IllegalTransition,
    Trigger,
)

__all__ = [
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "ConnectionCore",
    "ConnectionStateMachine",
    "IllegalTransition",
    "Trigger",
]
