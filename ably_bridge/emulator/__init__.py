"""A local, protocol-compatible Ably server: REST and realtime on one port, with faults.

``Emulator`` runs it in a background thread for tests; ``python -m
ably_bridge.emulator`` (or ``ably-bridge emulator``) runs it in the foreground.
"""

from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.server import Emulator

__all__ = ["Emulator", "EmulatorConfig"]
