"""The objects one running emulator shares between its REST and realtime handlers.

:class:`Runtime` bundles the state, the realtime hub, the fault controller and
transport facts (TLS or not, the address it listens on); aiohttp handlers find
it under :data:`RUNTIME`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ably_bridge.emulator.state import EmulatorState

if TYPE_CHECKING:
    from ably_bridge.emulator.fanout import Hub
    from ably_bridge.emulator.faults import Faults


@dataclass(eq=False)
class Runtime:
    state: EmulatorState
    hub: Hub
    faults: Faults
    tls: bool = False
    bind_host: str = "127.0.0.1"


RUNTIME = web.AppKey("ably_emulator_runtime", Runtime)
