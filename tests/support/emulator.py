"""The emulator the tests share: short presence, heartbeat and idle times.

Short times make disconnections and LEAVEs show within a second instead of
Ably's defaults (15 s), so tests wait less; a package that needs other values
overrides the ``emulator`` fixture with its own configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.server import Emulator

__all__ = ["FAST", "running"]

FAST = EmulatorConfig(
    presence_leave_delay_ms=300, heartbeat_interval_ms=300, max_idle_interval_ms=1_000
)


def running(config: EmulatorConfig = FAST) -> Iterator[Emulator]:
    """An emulator in a background thread for as long as the generator runs."""
    with Emulator(config=config) as emu:
        yield emu
