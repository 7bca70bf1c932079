"""What every part of the daemon shares: its state and (for type checking) its methods.

This module owns :class:`DaemonState`, the base of :class:`~.daemon.Daemon`
and of its parts (:mod:`.daemon_channels`, :mod:`.daemon_live`,
:mod:`.daemon_backfill`, :mod:`.daemon_ops`): the attributes
:meth:`~.daemon.Daemon.__init__` sets, declared once, and the methods each
part calls on the others, declared for the type checker only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ably_bridge.bridge.checkpoint import CheckpointStore
    from ably_bridge.bridge.config import BridgeConfig
    from ably_bridge.bridge.core import lifecycle as lc
    from ably_bridge.bridge.core.start_points import StartPlan, StartPoints
    from ably_bridge.bridge.discovery import DiscoverySchedule
    from ably_bridge.bridge.dispatch import Dispatcher
    from ably_bridge.bridge.metrics import BridgeMetrics
    from ably_bridge.bridge.router import Router
    from ably_bridge.bridge.sharding import ShardView
    from ably_bridge.bridge.source import (
        ChannelDirectory,
        ChannelSource,
        HistorySource,
        StateChange,
    )
    from ably_bridge.bridge.tracks import (
        BackfillDone,
        ChannelTrack,
        DaemonOptions,
        Discovered,
        Gap,
        Live,
    )
    from ably_bridge.bridge.watermark import StartWatermark
    from ably_bridge.clock import Clock

__all__ = ["DaemonState"]


class DaemonState:
    """The daemon's attributes (set by ``Daemon.__init__``) and, for mypy, its methods."""

    config: BridgeConfig
    source: ChannelSource
    shards: ShardView | None
    _shard_version: int
    _shard_tokens: dict[int, int]
    _next_maintain: float
    history: HistorySource
    directory: ChannelDirectory | None
    dispatcher: Dispatcher
    checkpoints: CheckpointStore | None
    executor: Executor
    metrics: BridgeMetrics
    clock: Clock
    options: DaemonOptions
    _reload_config: Callable[[], BridgeConfig] | None
    router: Router
    tracks: dict[str, ChannelTrack]
    _waiting: set[str]
    _staged: list[tuple[ChannelTrack, Live]]
    _received_messages: int  # messages received, not counted in the metrics yet
    _chunk_sizes: dict[str, int]  # channel -> most messages per submit, for _chunk_router
    _chunk_router: Router | None
    _gauges_at: float
    _next_scan: float
    inbox: queue.SimpleQueue[Any]
    _carry: Any
    _discovered: dict[str, set[str]]
    _lookback: dict[str, float]
    starts: StartPoints
    _no_presence_history: set[str]
    watermark: StartWatermark
    _attachments: int
    _schedule: DiscoverySchedule
    _stop: threading.Event
    _reload: threading.Event
    _started: bool
    stopped: bool
    heartbeat: float

    if TYPE_CHECKING:

        def request_stop(self) -> None: ...

        def request_reload(self) -> None: ...

        def call_soon(self, fn: Callable[[], None]) -> None: ...

        def start(self) -> None: ...

        def run(self) -> None: ...

        def shutdown(self, timeout: float | None = None) -> None: ...

        def step(self, timeout: float = 0.0) -> int: ...

        def run_until_idle(self, max_steps: int = 1000) -> None: ...

        def _wait_time(self) -> float: ...

        def _handle(self, item: Any) -> None: ...

        def _scan_due(self) -> bool: ...

        def _timers(self, scan: bool = True) -> None: ...

        def desired_channels(self) -> set[str]: ...

        def _sync_channels(self) -> None: ...

        def _feed(self, track: ChannelTrack, event: lc.Input) -> None: ...

        def _perform(self, track: ChannelTrack, effect: lc.Effect) -> None: ...

        def _attach(self, track: ChannelTrack) -> None: ...

        def _new_attachment(self, track: ChannelTrack) -> None: ...

        def _safe_detach(self, name: str) -> None: ...

        def _on_state(self, track: ChannelTrack, change: StateChange) -> None: ...

        def _pause(self, track: ChannelTrack, why: str) -> None: ...

        def _resume_paused(self) -> None: ...

        def _drain_waiting(self) -> None: ...

        def _coalesce(self, item: Live) -> tuple[Live, Any]: ...

        def _on_live(self, item: Live) -> None: ...

        def _on_live_events(self, track: ChannelTrack, item: Live) -> None: ...

        def _try_submit(self, track: ChannelTrack, item: Live) -> bool: ...

        def _hold(self, track: ChannelTrack, item: Live) -> None: ...

        def _flush_staged(self) -> None: ...

        def _drain(self, track: ChannelTrack) -> None: ...

        def _message_routes(self, channel: str) -> list[str]: ...

        def _start_backfill(self, track: ChannelTrack, attach_serial: str | None) -> None: ...

        def _scope(self, channel: str) -> str: ...

        def _scopes(self) -> list[str]: ...

        def _backfill_job(
            self,
            channel: str,
            routes: list[str],
            presence_tracks: list[str],
            attach_serial: str | None,
            plan: StartPlan,
            floor: tuple[str, Any] = ("all", None),
        ) -> Gap: ...

        def _on_backfill(self, done: BackfillDone) -> None: ...

        def _chunk_size(self, channel: str) -> int: ...

        def _discovery_done(self, prefix: str) -> Callable[[Future[list[str]]], None]: ...

        def _on_discovered(self, item: Discovered) -> None: ...

        def _check_shards(self) -> None: ...

        def _drop_shards(self, gone: set[int], releasing: set[int]) -> None: ...

        def _do_reload(self) -> None: ...

        def reload(self, config: BridgeConfig) -> None: ...

        def phase_counts(self) -> dict[str, int]: ...

        def readiness(self) -> tuple[bool, list[str]]: ...

        def _update_gauges(self) -> None: ...

        def _refresh_gauges(self) -> None: ...
