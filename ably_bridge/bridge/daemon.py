"""The bridge daemon: channel lifecycles, gap-free backfill, back-pressure, reload, drain.

This module owns :class:`Daemon`, the one **delivery thread** of the bridge::

    source listeners (any thread) --enqueue--> inbox --step()--> Dispatcher --> sinks
    backfill / discovery jobs (executor) --result--> inbox

Everything that touches the :class:`~ably_bridge.bridge.dispatch.Dispatcher`
or the per-channel state runs in :meth:`Daemon.step` on that thread; listeners
and background jobs only put items in the inbox. This module is the driver's
loop (start, step, timers, drain, stop); its parts are :mod:`.daemon_channels`
(the channel set and the lifecycle transitions), :mod:`.daemon_live` (live
events to the dispatcher), :mod:`.daemon_backfill` (reading gaps) and
:mod:`.daemon_ops` (discovery, shards, reload, status), over the shared state of
:mod:`.daemon_state`. ``step`` never sleeps when
given ``timeout=0``, so unit tests drive it with a fake source, an inline
executor and a :class:`~ably_bridge.clock.FakeClock`.

Per channel (:class:`ChannelTrack`) the phase moves as the transition table of
:mod:`.core.lifecycle` decides (attaching, backfilling, live, paused, failed,
stopped); this module is the driver that feeds it inputs (state changes,
backfill outcomes, timers, back-pressure) and performs the effects it returns
(attach, detach, backfill to an attach point, go live, retry later).

* **Gap-free**: on every attach without continuity the daemon reads history
  from the oldest checkpoint of the channel's routes up to the attach serial
  (``untilAttach``) and submits it, in order, before the live events that
  arrived meanwhile. A channel without a checkpoint starts at its start point
  (:mod:`.core.start_points`), fixed once when the channel is first seen (a
  configured channel: its first attach; a discovered one: a poll interval
  before it was found) and written as a seed checkpoint before anything of the
  channel is delivered, so a crash before the first delivery still backfills;
  while Redis is down it is kept in memory, never recomputed.
* **Epochs**: each attach of a channel gets a new epoch; its listeners carry
  it, so events of an abandoned attachment (paused, detached, reloaded) are
  dropped instead of interleaving with the next one's backfill.
* **Back-pressure**: a refused ``submit_*`` pauses the channel (detach; its
  checkpoint stops moving); paused channels re-attach when the dispatcher is
  healthy and its buffers are below ``resume_fraction`` of their size.
* **Shards** (optional, :mod:`.sharding`): only channels of the shards this
  replica owns are attached. The daemon polls the shard view's ``version``
  every step (before any pump): a shard gained is attached (and backfilled
  from its checkpoints, which closes the gap since the previous owner); a
  shard whose token changed or vanished is dropped at once (epoch bump,
  detach) and, when lost, its queued deliveries are forgotten (the new owner
  delivers them); a shard being handed over is reported drained once the
  dispatcher has nothing of it in flight, and only then released.
* **Connections**: a source with ``maintain()`` (the
  :class:`~.connections.ConnectionPool`) is maintained every
  ``maintain_interval`` seconds (rates, moves for the message-rate budget).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ably_bridge.bridge.checkpoint import CheckpointStore
from ably_bridge.bridge.config import BridgeConfig
from ably_bridge.bridge.core import lifecycle as lc
from ably_bridge.bridge.core.start_points import StartPoints
from ably_bridge.bridge.daemon_backfill import BackfillMixin
from ably_bridge.bridge.daemon_channels import ChannelsMixin
from ably_bridge.bridge.daemon_live import LiveMixin
from ably_bridge.bridge.daemon_ops import OpsMixin
from ably_bridge.bridge.daemon_state import DaemonState
from ably_bridge.bridge.discovery import DiscoverySchedule, discovery_prefixes
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.sharding import ShardView
from ably_bridge.bridge.source import (
    ChannelDirectory,
    ChannelSource,
    HistorySource,
)
from ably_bridge.bridge.tracks import (
    GAUGE_INTERVAL,
    MANY_CHANNELS,
    SCAN_INTERVAL,
    BackfillDone,
    Call,
    ChannelTrack,
    DaemonOptions,
    Discovered,
    InlineExecutor,
    Live,
    weight,
)
from ably_bridge.bridge.watermark import StartWatermark
from ably_bridge.clock import Clock, SystemClock

__all__ = [
    "GAUGE_INTERVAL",
    "MANY_CHANNELS",
    "SCAN_INTERVAL",
    "ChannelTrack",
    "Daemon",
    "DaemonOptions",
    "InlineExecutor",
]  # (re-exported)

logger = logging.getLogger(__name__)


class Daemon(ChannelsMixin, LiveMixin, BackfillMixin, OpsMixin, DaemonState):
    """Runs the data path for the configured channels (see the module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        source: ChannelSource,
        history: HistorySource,
        dispatcher: Dispatcher,
        checkpoints: CheckpointStore | None,
        executor: Executor,
        directory: ChannelDirectory | None = None,
        metrics: BridgeMetrics | None = None,
        clock: Clock | None = None,
        options: DaemonOptions | None = None,
        reload_config: Callable[[], BridgeConfig] | None = None,
        shards: ShardView | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.shards = shards
        self._shard_version = -1
        self._shard_tokens: dict[int, int] = {}  # what the tracks were built for
        self._next_maintain = 0.0
        self.history = history
        self.directory = directory
        self.dispatcher = dispatcher
        self.checkpoints = checkpoints
        self.executor = executor
        self.metrics = metrics or BridgeMetrics()
        self.clock = clock or SystemClock()
        self.options = options or DaemonOptions()
        self._reload_config = reload_config
        self.router: Router = dispatcher.router
        self.tracks: dict[str, ChannelTrack] = {}
        self._waiting: set[str] = set()  # channels that queued events (see _drain_waiting)
        self._staged: list[tuple[ChannelTrack, Live]] = []  # live frames to submit (_flush_staged)
        self._received_messages = 0
        self._chunk_sizes: dict[str, int] = {}
        self._chunk_router: Router | None = None
        self._gauges_at = float("-inf")  # monotonic time the gauges were last refreshed
        self._next_scan = float("-inf")  # many channels: when timers are walked next
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._carry: Any = None  # an inbox item taken but not handled yet: handled first
        self._discovered: dict[str, set[str]] = {}
        self._lookback: dict[str, float] = {}  # discovered channel -> seconds to backfill
        self.starts = StartPoints(self.options.seed_skew_ms)
        self._no_presence_history: set[str] = set()  # channels logged once for it
        self.watermark = StartWatermark(
            checkpoints, self.starts, run_started_ms=self.clock.time_ms(),
            skew_ms=self.options.seed_skew_ms, grace_s=self.options.start_floor_grace,
            max_age_s=self.options.start_floor_max_age,
            interval_s=self.options.watermark_interval,
        )  # fmt: skip
        self._attachments = 0  # numbers each attach request (start points tell them apart)
        self._schedule = DiscoverySchedule(
            discovery_prefixes(self.router.routes), self.clock.monotonic()
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._started = False
        self.stopped = False
        self.heartbeat = self.clock.monotonic()

    # -- control (any thread) -------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`run` to drain and stop (safe from a signal handler)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask :meth:`run` to reload the routes (safe from a signal handler)."""
        self._reload.set()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the delivery thread at the next step."""
        self.inbox.put(Call(fn))

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Attach the configured channels (idempotent)."""
        if self._started:
            return
        self._started = True
        if self.shards is not None:
            self._shard_version = self.shards.version
            self._shard_tokens = dict(self.shards.tokens())
        self._next_maintain = self.clock.monotonic() + self.options.maintain_interval
        self._sync_channels()
        logger.info(
            "bridge started: %d channel(s), %d discovery prefix(es)",
            len(self.tracks),
            len(self._schedule.prefixes),
        )

    def run(self) -> None:
        """Step until :meth:`request_stop`, then drain and close (the blocking main loop)."""
        self.start()
        try:
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self._do_reload()
                self.step(self._wait_time())
        finally:
            self.shutdown()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop taking events, drain the sink buffers, flush checkpoints, close the source."""
        if self.stopped:
            return
        self.stopped = True
        timeout = self.options.drain_timeout if timeout is None else timeout
        for track in self.tracks.values():
            # Everything still in flight from the source is dropped: it is after the
            # checkpoint, so the next start replays it.
            self._feed(track, lc.Stopping())
        try:
            self.source.close()
        except Exception as exc:
            logger.warning("closing the Ably source failed: %s", exc)
        deadline = self.clock.monotonic() + timeout
        while self.dispatcher.pending() and self.clock.monotonic() < deadline:
            wait = self.dispatcher.next_wakeup() or 0.0
            if wait > 0:
                self.clock.sleep(min(wait, max(0.0, deadline - self.clock.monotonic()), 1.0))
            self.dispatcher.pump()
        self.dispatcher.pump()
        self.dispatcher.flush_checkpoints()  # deferred ones, and those that failed to save
        left = self.dispatcher.pending()
        if left:
            logger.warning("shutdown: %d deliveries not drained (replayed on next start)", left)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._update_gauges()
        logger.info("bridge stopped: %d deliveries left undelivered", left)

    # -- the delivery thread ---------------------------------------------------------
    def step(self, timeout: float = 0.0) -> int:
        """Handle inbox items (waiting up to ``timeout`` for the first), timers and pumps."""
        handled = 0
        # Budget in events, not items: a live item holds a whole frame, and the
        # sinks must be pumped before more is accepted than their buffers hold.
        budget = self.options.max_inbox_per_step
        item, self._carry = self._carry, None
        if item is None:
            try:
                item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            except queue.Empty:
                item = None
        while item is not None:
            following = None
            if isinstance(item, Live) and item.kind == "messages":
                item, following = self._coalesce(item)
            else:
                self._flush()  # (staged frames go first: this item may change a channel)
            try:
                self._handle(item)
            except Exception:  # one bad item must not stop the delivery thread
                logger.exception("handling %s failed", type(item).__name__)
            handled += 1
            budget -= max(1, weight(item)) if isinstance(item, Live) else 1
            if budget <= 0:
                self._carry = following  # (taken from the inbox: it goes first next step)
                break
            if following is not None:
                item = following
                continue
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                item = None
        self._flush()
        scan = self._scan_due()
        self._timers(scan)
        self._drain_waiting()
        for _ in range(self.options.max_pumps_per_step):
            if self.dispatcher.next_wakeup() != 0.0 or self.dispatcher.pump() == 0:
                break
        if scan:
            self._resume_paused()
        self.heartbeat = self.clock.monotonic()
        self._refresh_gauges()
        return handled

    def run_until_idle(self, max_steps: int = 1000) -> None:
        """Step until the inbox is empty and nothing is ready to pump (tests)."""
        for _ in range(max_steps):
            handled = self.step()
            if (
                handled == 0
                and self._carry is None
                and self.inbox.empty()
                and self.dispatcher.next_wakeup() != 0.0
            ):
                return

    def _wait_time(self) -> float:
        if self._carry is not None:
            return 0.0
        waits = [self.options.tick]
        wake = self.dispatcher.next_wakeup()
        if wake is not None:
            waits.append(wake)
        due = self._schedule.next_due(self.clock.monotonic())
        if due is not None:
            waits.append(due)
        now = self.clock.monotonic()
        waits.extend(max(0.0, t.retry_at - now) for t in self.tracks.values() if t.retry_at)
        return max(0.001, min(waits))

    def _flush(self) -> None:
        try:
            self._flush_staged()
        except Exception:  # (as for one bad item: the delivery thread goes on)
            logger.exception("submitting live frames failed")

    def _handle(self, item: Any) -> None:
        if isinstance(item, Live):
            self._on_live(item)
        elif isinstance(item, BackfillDone):
            self._on_backfill(item)
        elif isinstance(item, Discovered):
            self._on_discovered(item)
        elif isinstance(item, Call):
            item.fn()

    # -- timers -------------------------------------------------------------------------
    def _scan_due(self) -> bool:
        """Whether this step walks every channel's timers (always, below MANY_CHANNELS)."""
        if len(self.tracks) < MANY_CHANNELS:
            return True
        now = self.clock.monotonic()
        if now < self._next_scan:
            return False
        self._next_scan = now + SCAN_INTERVAL
        return True

    def _timers(self, scan: bool = True) -> None:
        now = self.clock.monotonic()
        self._check_shards()
        maintain = getattr(self.source, "maintain", None)
        if maintain is not None and now >= self._next_maintain and not self.stopped:
            self._next_maintain = now + self.options.maintain_interval
            try:
                maintain()
            except Exception as exc:
                logger.warning("connection maintenance failed: %s", exc)
        for track in list(self.tracks.values()) if scan else ():
            if (
                track.phase == "attaching"
                and track.retry_at is None
                and now - track.attach_started > self.options.attach_watchdog
            ):
                logger.warning(
                    "%s not attached after %.0fs; attaching again",
                    track.name,
                    now - track.attach_started,
                    extra={"channel": track.name},
                )
                self._attach(track)
                continue
            if track.retry_at is None or track.retry_at > now:
                continue
            track.retry_at = None
            self._feed(track, lc.RetryDue())
        if not self.stopped:
            self.watermark.tick(
                now, self.clock.time_ms(), self._scopes(),
                lambda ch, scope: self._scope(ch) == scope, self.executor, self.call_soon,
            )  # fmt: skip
        if self.directory is not None and not self.stopped:
            for prefix in self._schedule.due(now):
                future = self.executor.submit(self.directory.list_channels, prefix)
                future.add_done_callback(self._discovery_done(prefix))
