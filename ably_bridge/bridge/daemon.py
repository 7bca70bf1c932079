"""The bridge daemon: channel lifecycles, gap-free backfill, back-pressure, reload, drain.

This module owns :class:`Daemon`, the one **delivery thread** of the bridge::

    source listeners (any thread) --enqueue--> inbox --step()--> Dispatcher --> sinks
    backfill / discovery jobs (executor) --result--> inbox

Everything that touches the :class:`~ably_bridge.bridge.dispatch.Dispatcher`
or the per-channel state runs in :meth:`Daemon.step` on that thread; listeners
and background jobs only put items in the inbox. ``step`` never sleeps when
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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from ably_bridge.bridge.backfill import gap_messages, gap_presence
from ably_bridge.bridge.checkpoint import CheckpointStore
from ably_bridge.bridge.config import BridgeConfig
from ably_bridge.bridge.core import lifecycle as lc
from ably_bridge.bridge.core.position import presence_track
from ably_bridge.bridge.core.start_points import StartPlan, StartPoints
from ably_bridge.bridge.discovery import DiscoverySchedule, discovery_prefixes
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.envelope import LIFECYCLE_EVENTS
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.sharding import ShardView, shard_of
from ably_bridge.bridge.source import (
    ChannelDirectory,
    ChannelSource,
    HistorySource,
    PresenceHistoryUnavailable,
    SourceHandlers,
    StateChange,
)
from ably_bridge.bridge.tracks import (
    PHASES,
    BackfillDone,
    Call,
    ChannelTrack,
    DaemonOptions,
    Discovered,
    Gap,
    InlineExecutor,
    Live,
)
from ably_bridge.bridge.watermark import UNKNOWN, StartWatermark
from ably_bridge.clock import Clock, SystemClock
from ably_bridge.protocol.models import Message, PresenceMessage

__all__ = ["ChannelTrack", "Daemon", "DaemonOptions", "InlineExecutor"]  # (re-exported)

logger = logging.getLogger(__name__)

# With MANY_CHANNELS channels or more, what walks every channel no longer runs
# after every step (a walk over 10,000 channels costs ~0.3-0.5 ms): the gauges are
# refreshed at most every GAUGE_INTERVAL seconds, and the per-channel timers
# (re-attach, backfill retry, attach watchdog) and paused channels are looked at
# every SCAN_INTERVAL seconds, so such a timer may fire that much late.
MANY_CHANNELS = 1_000
GAUGE_INTERVAL = 0.25
SCAN_INTERVAL = 0.05


class Daemon:
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
            try:
                self._handle(item)
            except Exception:  # one bad item must not stop the delivery thread
                logger.exception("handling %s failed", type(item).__name__)
            handled += 1
            budget -= max(1, _weight(item)) if isinstance(item, Live) else 1
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

    def _drain_waiting(self) -> None:
        """Drain the live channels with waiting events.

        Only the channels that queued events are looked at (``_waiting``, kept
        where events are queued), not every channel: with ten thousand channels
        a walk over all of them on every step cost ~1 ms.
        """
        waiting = self._waiting
        if not waiting:
            return
        for name in list(waiting):
            track = self.tracks.get(name)
            if track is None or not track.pending:
                waiting.discard(name)
                continue
            if track.phase == "live":
                self._drain(track)
                if not track.pending:
                    waiting.discard(name)

    def _refresh_gauges(self) -> None:
        """:meth:`_update_gauges` after every step, or with MANY_CHANNELS or more at
        most every GAUGE_INTERVAL (they walk every channel)."""
        if len(self.tracks) >= MANY_CHANNELS:
            now = self.clock.monotonic()
            if now - self._gauges_at < GAUGE_INTERVAL:
                return
            self._gauges_at = now
        self._update_gauges()

    def _coalesce(self, item: Live) -> tuple[Live, Any]:
        """``item`` joined with the frames of its channel (same attachment) queued right
        behind it, up to a submit chunk; and the inbox item after them, if one was taken.

        At one message per frame this makes one submit (routing, buffering,
        ordering bookkeeping) per run of frames instead of one per message; the
        order of events is unchanged.
        """
        payload = item.payload
        limit = self._chunk_size(item.channel)
        if len(payload) >= limit:
            return item, None
        joined: list[Any] | None = None
        following: Any = None
        while True:
            try:
                following = self.inbox.get_nowait()
            except queue.Empty:
                following = None
                break
            if not (
                isinstance(following, Live)
                and following.kind == "messages"
                and following.channel == item.channel
                and following.epoch == item.epoch
                and len(payload) + len(following.payload) <= limit
            ):
                break
            if joined is None:
                joined = payload = list(payload)
            payload.extend(following.payload)
        if joined is None:
            return item, following
        return Live(item.channel, item.epoch, "messages", joined), following

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

    def _handle(self, item: Any) -> None:
        if isinstance(item, Live):
            self._on_live(item)
        elif isinstance(item, BackfillDone):
            self._on_backfill(item)
        elif isinstance(item, Discovered):
            self._on_discovered(item)
        elif isinstance(item, Call):
            item.fn()

    # -- channel set ------------------------------------------------------------------
    def desired_channels(self) -> set[str]:
        """Static channel names plus discovered ones that some route wants."""
        out = set(self.router.static_channels())
        for names in self._discovered.values():
            out.update(n for n in names if self.router.wants(n))
        if self.shards is not None:
            count, owned = self.shards.shards, self._shard_tokens
            out = {n for n in out if shard_of(n, count) in owned}
        return out

    def _sync_channels(self) -> None:
        desired = self.desired_channels()
        for name in sorted(set(self.tracks) - desired):
            track = self.tracks.pop(name)
            track.epoch += 1
            self._safe_detach(name)
            logger.info("channel %s detached: no route wants it", name, extra={"channel": name})
        for name in sorted(desired - set(self.tracks)):
            lookback = self._lookback.get(name, 0.0)
            track = ChannelTrack(name, lookback=lookback)
            self.tracks[name] = track
            self.starts.see(name, self.clock.time_ms(), lookback)  # (fixed the first time)
            self._attach(track)

    # -- the lifecycle (core/lifecycle.py decides; this driver performs) -----------------
    def _feed(self, track: ChannelTrack, event: lc.Input) -> None:
        """Move ``track`` as the lifecycle table says for ``event``; perform the effects."""
        decision = lc.decide(lc.View(track.phase, track.live_once, track.attach_serial), event)
        if decision is None:
            return
        track.phase = decision.phase
        for effect in decision.effects:
            self._perform(track, effect)

    def _perform(self, track: ChannelTrack, effect: lc.Effect) -> None:
        if isinstance(effect, lc.Backfill):
            self._start_backfill(track, effect.attach_serial, effect.retry)
        elif isinstance(effect, lc.GoLive):
            track.live_once = True
            self._waiting.add(track.name)
            self._drain(track)
        elif isinstance(effect, lc.NewAttachment):
            self._new_attachment(track)
        elif isinstance(effect, lc.DropHeld):
            track.epoch += 1  # what the source still delivers for it is dropped
            track.clear()
            track.retry_at = None
        elif isinstance(effect, lc.Detach):
            self._safe_detach(track.name)
        elif isinstance(effect, lc.InvalidateBackfill):
            track.backfill_seq += 1
        elif isinstance(effect, lc.RetryLater):
            if effect.kind == "backfill":
                delay = self.options.backfill_retry.delay(track.backfill_failures, 0.5)
            else:
                delay = self.options.reattach_delay
            track.retry_at = self.clock.monotonic() + delay
        elif isinstance(effect, lc.CountContinuityLoss):
            self.metrics.continuity.inc()
            logger.warning(
                "continuity lost on %s: backfilling from the checkpoint",
                track.name,
                extra={"channel": track.name},
            )

    def _attach(self, track: ChannelTrack) -> None:
        self._feed(track, lc.AttachRequested())

    def _new_attachment(self, track: ChannelTrack) -> None:
        track.epoch += 1
        track.clear()
        track.retry_at = None
        track.live_once = False
        track.attach_serial = None
        track.backfill_seq += 1
        track.attach_started = self.clock.monotonic()
        self._attachments += 1
        track.attachment = self._attachments
        name, epoch = track.name, track.epoch
        put = self.inbox.put

        # (received events are counted on the delivery thread, per inbox item: no
        # lock taken on the listener thread for every frame)
        def on_messages(messages: Sequence[Message]) -> None:
            put(Live(name, epoch, "messages", list(messages)))

        def on_presence(messages: Sequence[PresenceMessage]) -> None:
            put(Live(name, epoch, "presence", list(messages)))

        def on_sync(members: Sequence[PresenceMessage]) -> None:
            put(Live(name, epoch, "sync", list(members)))

        def on_state(change: StateChange) -> None:
            put(Live(name, epoch, "state", change))

        handlers = SourceHandlers(on_messages, on_presence, on_sync, on_state)
        try:
            self.source.attach(
                name,
                handlers,
                cipher_key=self.router.cipher_key(name),
                presence="presence" in self.router.sources_for(name),
            )
        except Exception as exc:
            logger.error("attach of %s failed: %s", name, exc, extra={"channel": name})
            self._feed(track, lc.AttachFailed())

    def _safe_detach(self, name: str) -> None:
        try:
            self.source.detach(name)
        except Exception as exc:
            logger.warning("detach of %s failed: %s", name, exc, extra={"channel": name})

    # -- live events --------------------------------------------------------------------
    def _on_live(self, item: Live) -> None:
        if item.kind == "messages":
            self.metrics.received.inc(len(item.payload), "message")
        elif item.kind == "presence":
            self.metrics.received.inc(len(item.payload), "presence")
        track = self.tracks.get(item.channel)
        if track is None or track.epoch != item.epoch:
            return  # an abandoned attachment; its events are replayed from the checkpoint
        if item.kind == "state":
            self._on_state(track, item.payload)
            return
        payload = item.payload
        if item.kind == "messages" and len(payload) > 1:
            # A frame's messages arrive as one item; one larger than a chunk is
            # split, so each part fits a sink buffer that is not empty.
            chunk = self._chunk_size(track.name)
            if len(payload) > chunk:
                for i in range(0, len(payload), chunk):
                    if track.epoch != item.epoch:
                        return  # paused by an earlier part: the rest is replayed
                    part = Live(item.channel, item.epoch, "messages", payload[i : i + chunk])
                    self._on_live_events(track, part)
                return
        self._on_live_events(track, item)

    def _on_live_events(self, track: ChannelTrack, item: Live) -> None:
        if track.phase == "live" and not track.pending and self._try_submit(track, item):
            return
        if track.phase in ("live", "backfilling", "attaching"):
            # Behind a backfill or a full sink buffer, or ahead of a state change
            # that another listener has not delivered yet: keep them in order,
            # bounded. Received events are never dropped here; a later backfill
            # replaces only those it also returns (by id).
            track.pending.append(item)
            self._waiting.add(track.name)
            track.held_live += _weight(item)
            if track.held_live > self.config.delivery.buffer_size:
                self._pause(track, "sink buffers full and too many live events waiting")
        # paused/failed/stopped: the epoch moved on, so nothing reaches here

    def _try_submit(self, track: ChannelTrack, item: Live) -> bool:
        """Hand one item to the dispatcher; False when refused (back-pressure)."""
        d = self.dispatcher
        if item.kind == "messages":
            return d.submit_messages(track.name, item.payload)
        if item.kind == "presence":
            return d.submit_presence(track.name, item.payload)
        if item.kind == "sync":
            d.presence_synced(track.name, item.payload)
        return True

    def _drain(self, track: ChannelTrack) -> None:
        """Submit the channel's waiting events in order until one is refused."""
        pending = track.pending
        while pending and track.phase == "live":
            item = pending[0]
            if not self._try_submit(track, item):
                return
            pending.popleft()
            if item.epoch >= 0:
                track.held_live -= _weight(item)

    def _on_state(self, track: ChannelTrack, change: StateChange) -> None:
        track.source_state = change.current
        name = track.name
        if change.event in LIFECYCLE_EVENTS and (change.event != "update" or not change.resumed):
            accepted = self.dispatcher.submit_lifecycle(
                name,
                change.event,
                previous=change.previous,
                current=change.current,
                reason=change.reason,
                resumed=change.resumed if change.current == "attached" else None,
            )
            if not accepted:
                logger.warning(
                    "lifecycle event %s of %s refused (back-pressure)", change.event, name
                )
        if change.current == "attached":
            self._feed(track, lc.SourceAttached(change.resumed, change.attach_serial))
        elif change.current == "suspended":
            self._feed(track, lc.SourceSuspended())
        elif change.current == "detached":
            self._feed(track, lc.SourceDetached())
        elif change.current == "failed":
            reason = change.reason
            logger.error(
                "channel %s failed: %s; re-attaching in %.0fs",
                name,
                reason.message if reason is not None else "no reason given",
                self.options.reattach_delay,
                extra={"channel": name},
            )
            self._feed(track, lc.SourceFailed())

    # -- backfill -----------------------------------------------------------------------
    def _message_routes(self, channel: str) -> list[str]:
        return [r.id for r in self.router.routes_for(channel, "message")]

    def _start_backfill(
        self, track: ChannelTrack, attach_serial: str | None, retry: bool = False
    ) -> None:
        """Perform :class:`~.core.lifecycle.Backfill`: read the gap on the executor."""
        track.retry_at = None
        track.attach_serial = attach_serial
        track.backfill_seq += 1
        routes = self._message_routes(track.name)
        presence = [presence_track(r.id) for r in self.router.routes_for(track.name, "presence")]
        if not routes and not presence:
            self._feed(track, lc.BackfillSucceeded())  # nothing to read
            return
        epoch, seq, name = track.epoch, track.backfill_seq, track.name
        self.starts.see(name, self.clock.time_ms(), track.lookback)
        plan = self.starts.plan(name, track.attachment, retry)
        scope = self._scope(name)
        floor = (scope, self.watermark.submit(scope))
        future = self.executor.submit(
            self._backfill_job, name, routes, presence, attach_serial, plan, floor
        )
        future.add_done_callback(lambda f: self.inbox.put(BackfillDone(name, epoch, seq, f, floor)))

    def _scope(self, channel: str) -> str:
        """The start watermark's scope of ``channel``: its shard, or ``all``."""
        if self.shards is None:
            return "all"
        return str(shard_of(channel, self.shards.shards))

    def _backfill_job(
        self,
        channel: str,
        routes: list[str],
        presence_tracks: list[str],
        attach_serial: str | None,
        plan: StartPlan,
        floor: tuple[str, Any] = ("all", None),
    ) -> Gap:
        """Runs on an executor thread (:func:`~.backfill.gap_messages` and
        :func:`~.backfill.gap_presence`), from the channel's fixed start point
        (floored by the start watermark) where a route has no checkpoint yet."""
        scope, known = floor
        value = self.watermark.job_floor(scope, known)
        loaded = value if known is UNKNOWN else UNKNOWN
        plan = self.watermark.job_seed(channel, plan, value, self.clock.time_ms())
        seed_ms = plan.seed.timestamp
        messages: list[Message] = []
        if routes:
            messages = gap_messages(
                self.checkpoints, self.history, channel, routes, attach_serial, plan.seed,
                plan.read_seed,
            )  # fmt: skip
        if not presence_tracks:
            return Gap(messages, seed_ms=seed_ms, loaded_floor=loaded)
        try:
            events = gap_presence(
                self.checkpoints, self.history, channel, presence_tracks, plan.seed,
                plan.read_seed,
            )  # fmt: skip
        except PresenceHistoryUnavailable:
            return Gap(messages, [], True, seed_ms, loaded)
        return Gap(messages, events, False, seed_ms, loaded)

    def _on_backfill(self, done: BackfillDone) -> None:
        if done.floor is not None:  # (every result, stale or not, settles its watermark load)
            failed = done.future.exception() is not None
            loaded = UNKNOWN if failed else done.future.result().loaded_floor
            self.watermark.done(done.floor[0], done.floor[1], loaded)
        track = self.tracks.get(done.channel)
        if track is None or track.epoch != done.epoch or track.backfill_seq != done.seq:
            return
        if track.phase != "backfilling":
            return
        try:
            gap = done.future.result()
        except Exception as exc:
            track.backfill_failures += 1
            self._feed(track, lc.BackfillFailed())
            logger.warning(
                "backfill of %s failed (attempt %d), retrying in %.1fs: %s",
                done.channel,
                track.backfill_failures,
                max(0.0, (track.retry_at or 0.0) - self.clock.monotonic()),
                exc,
                extra={"channel": done.channel},
            )
            return
        track.backfill_failures = 0
        if gap.seed_ms is not None:
            self.starts.lower(track.name, gap.seed_ms)
        self.starts.saved(track.name)
        messages = gap.messages
        if messages or gap.presence:
            logger.info(
                "backfilling %d message(s) and %d presence event(s) on %s",
                len(messages), len(gap.presence), done.channel,
                extra={"channel": done.channel},
            )  # fmt: skip
            self.metrics.backfilled.inc(len(messages))
        if gap.presence_unavailable:
            self.metrics.presence_history_unavailable.inc()
            if track.name not in self._no_presence_history:
                self._no_presence_history.add(track.name)
                logger.warning(
                    "presence history of %s is not available: presence events missed while "
                    "not attached are not replayed (the member snapshot is rebuilt by SYNC)",
                    track.name,
                    extra={"channel": track.name},
                )
        track.put_gap_first(messages, self._chunk_size(track.name), gap.presence)
        self._feed(track, lc.BackfillSucceeded())

    def _chunk_size(self, channel: str) -> int:
        """Most messages per submit: a chunk must fit a sink buffer that is not empty
        (each message may go to several routes' targets on one sink)."""
        routes = max(1, len(self._message_routes(channel)))
        return max(
            1, min(self.options.submit_chunk, self.config.delivery.buffer_size // (4 * routes))
        )

    # -- back-pressure ------------------------------------------------------------------
    def _pause(self, track: ChannelTrack, why: str) -> None:
        if track.phase == "paused":
            return
        self.metrics.pauses.inc()
        logger.warning(
            "pausing %s (%s); it resumes from its checkpoint when the sinks catch up",
            track.name,
            why,
            extra={"channel": track.name},
        )
        self._feed(track, lc.Overflow())

    def _resume_paused(self) -> None:
        paused = [t for t in self.tracks.values() if t.phase == "paused"]
        if not paused or not self.dispatcher.healthy():
            return
        limit = self.config.delivery.buffer_size * self.options.resume_fraction
        if self.dispatcher.pending() > limit:
            return
        for track in paused:
            logger.info("resuming %s", track.name, extra={"channel": track.name})
            self._attach(track)

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

    def _scopes(self) -> list[str]:
        if self.shards is None:
            return ["all"]
        return [str(s) for s in self._shard_tokens]

    def _discovery_done(self, prefix: str) -> Callable[[Future[list[str]]], None]:
        def done(future: Future[list[str]]) -> None:
            self.inbox.put(Discovered(prefix, future))

        return done

    def _on_discovered(self, item: Discovered) -> None:
        self._schedule.done(item.prefix, self.clock.monotonic())
        try:
            names = item.future.result()
        except Exception as exc:
            logger.warning("discovery of %r failed: %s", item.prefix, exc)
            return
        if item.prefix not in self._schedule.prefixes:
            return  # removed by a reload meanwhile
        known = self._discovered.get(item.prefix, set())
        self._discovered[item.prefix] = known | set(names)
        fresh = [n for n in names if n not in self.tracks and self.router.wants(n)]
        for name in fresh:
            self._lookback[name] = self._schedule.interval(item.prefix)
        if fresh:
            logger.info("discovered %d channel(s) under %r", len(fresh), item.prefix)
            self._sync_channels()

    # -- shards -------------------------------------------------------------------------
    def _check_shards(self) -> None:
        """Follow the shard view: drop lost/moved shards, attach gained ones, hand over."""
        shards = self.shards
        if shards is None or self._stop.is_set() or self.stopped:
            return
        if shards.version != self._shard_version:
            self._shard_version = shards.version
            tokens = dict(shards.tokens())
            releasing = shards.releasing()
            old, self._shard_tokens = self._shard_tokens, tokens
            gone = {s for s, t in old.items() if tokens.get(s) != t}
            if gone:
                self._drop_shards(gone, releasing)
            gained = len(set(tokens) - set(old))
            if gone or gained:
                logger.info(
                    "shards: %d owned (%d new, %d given up)", len(tokens), gained, len(gone)
                )
            self._sync_channels()
        releasing = shards.releasing()
        if releasing:
            # Only shards whose channels this thread already dropped, with nothing in flight.
            busy = {shard_of(ch, shards.shards) for ch in self.dispatcher.unsettled_channels()}
            for shard in releasing - busy - set(self._shard_tokens):
                shards.handed_over(shard)

    def _drop_shards(self, gone: set[int], releasing: set[int]) -> None:
        count = self.shards.shards if self.shards is not None else 1
        lost: set[str] = set()
        for name in [n for n in self.tracks if shard_of(n, count) in gone]:
            track = self.tracks.pop(name)
            track.epoch += 1  # anything still coming from the source is dropped
            track.clear()
            self._safe_detach(name)
            if shard_of(name, count) not in releasing:
                lost.add(name)
        if lost:
            # The lease is gone: nothing queued for these channels may be written
            # (the fence would refuse it anyway); the new owner delivers it.
            dropped = self.dispatcher.forget_channels(lost)
            logger.warning(
                "lost %d channel(s) with their shard(s); %d queued deliveries left to the owner",
                len(lost), dropped,
            )  # fmt: skip

    # -- reload ---------------------------------------------------------------------------
    def _do_reload(self) -> None:
        if self._reload_config is None:
            logger.warning("reload requested but no config source; ignored")
            return
        try:
            config = self._reload_config()
        except Exception as exc:  # keep running with the old routes
            logger.error("reload failed, keeping the current routes: %s", exc)
            return
        self.reload(config)

    def reload(self, config: BridgeConfig) -> None:
        """Swap in ``config``'s routes; attach and detach only the difference."""
        restart = ("app_id", "ably", "redis_url", "delivery", "dead_letter", "health", "sharding")
        for section in restart:
            if getattr(config, section) != getattr(self.config, section):
                logger.warning("reload: %s changed; that takes a restart", section)
        old = self.router
        before = {n: (old.cipher_key(n), old.sources_for(n)) for n in self.tracks}
        self.router = Router(config.routes)
        self.dispatcher.router = self.router
        self.config = config
        self._schedule = DiscoverySchedule(
            discovery_prefixes(self.router.routes), self.clock.monotonic()
        )
        self._discovered = {
            p: v for p, v in self._discovered.items() if p in self._schedule.prefixes
        }
        self._sync_channels()
        for name, (key, sources) in before.items():
            track = self.tracks.get(name)
            if track is None:
                continue
            if self.router.cipher_key(name) != key or self.router.sources_for(name) != sources:
                self._safe_detach(name)
                self._attach(track)  # new options; the backfill closes any gap
        logger.info("reloaded: %d route(s), %d channel(s)", len(config.routes), len(self.tracks))

    # -- status -----------------------------------------------------------------------
    def phase_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(PHASES, 0)
        for track in self.tracks.values():
            counts[track.phase] = counts.get(track.phase, 0) + 1
        return counts

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons not ready): connected, every channel live, sinks not failing."""
        problems: list[str] = []
        if not self._started:
            problems.append("starting")
        state = self.source.connection_state()
        if state != "connected":
            problems.append(f"connection {state}")
        not_live = sorted(n for n, t in self.tracks.items() if t.phase != "live")
        if not_live:
            problems.append(f"{len(not_live)} channel(s) not live: {', '.join(not_live[:5])}")
        if not self.dispatcher.healthy():
            problems.append("a sink is failing (retrying)")
        if self.shards is not None:
            problems.extend(self.shards.readiness())
            if self.shards.version != self._shard_version:
                problems.append("shard ownership changed; channels being updated")
        if self.stopped:
            problems.append("stopping")
        return not problems, problems

    def _update_gauges(self) -> None:
        m = self.metrics
        m.buffer_depth.set(self.dispatcher.pending())
        m.checkpoint_lag.set(self.dispatcher.checkpoint_lag(self.clock.time_ms()))
        m.channels.replace({(k,): float(v) for k, v in self.phase_counts().items()})
        state = self.source.connection_state()
        m.connection.replace({(state,): 1.0})
        states = getattr(self.source, "connection_states", None)
        per_state: dict[tuple[str, ...], float] = {}
        for each in states() if states is not None else [state]:
            per_state[(each,)] = per_state.get((each,), 0.0) + 1.0
        m.connections.replace(per_state)
        m.sync_dispatch(self.dispatcher.stats)
        if self.shards is not None:
            m.shards_owned.set(len(self._shard_tokens))
            counters = getattr(self.shards, "counters", None)
            if counters is not None:
                m.lease_renewals.set_total(counters.renewals)
                m.leases_acquired.set_total(counters.acquired)
                m.leases_released.set_total(counters.released)
                m.lease_losses.set_total(counters.lost)


def _weight(item: Live) -> int:
    """How many events a held live item counts for (``held_live`` bounds events, not items)."""
    if item.kind in ("messages", "presence"):
        return len(item.payload)
    return 1
