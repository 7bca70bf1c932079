"""The daemon's backfill driver: reading a channel's gap on the executor.

This module owns the :class:`BackfillMixin` part of :class:`~.daemon.Daemon`:
performing :class:`~.core.lifecycle.Backfill` (the start plan of
:mod:`.core.start_points`, floored by the start watermark, handed to a job
that reads message and presence history from the checkpoints), and taking
the result back on the delivery thread (queue the gap ahead of the held live
events, or retry with backoff; presence history unavailable: logged once).
"""

from __future__ import annotations

import logging
from typing import Any

from ably_bridge.bridge.backfill import gap_messages, gap_presence
from ably_bridge.bridge.core import lifecycle as lc
from ably_bridge.bridge.core.position import presence_track
from ably_bridge.bridge.core.shards import shard_of
from ably_bridge.bridge.core.start_points import StartPlan
from ably_bridge.bridge.daemon_state import DaemonState
from ably_bridge.bridge.source import (
    PresenceHistoryUnavailable,
)
from ably_bridge.bridge.tracks import (
    BackfillDone,
    ChannelTrack,
    Gap,
)
from ably_bridge.bridge.watermark import UNKNOWN
from ably_bridge.protocol.models import Message

__all__ = ["BackfillMixin"]

_CHUNK_SIZES_MAX = 100_000  # channels whose chunk size is kept (asked per live frame)

logger = logging.getLogger("ably_bridge.bridge.daemon")


class BackfillMixin(DaemonState):
    """Part of :class:`~.daemon.Daemon` (see the module docstring)."""

    def _message_routes(self, channel: str) -> list[str]:
        return [r.id for r in self.router.routes_for(channel, "message")]

    def _start_backfill(self, track: ChannelTrack, attach_serial: str | None) -> None:
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
        plan = self.starts.plan(name)
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

    def _scopes(self) -> list[str]:
        if self.shards is None:
            return ["all"]
        return [str(s) for s in self._shard_tokens]

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
        sizes = self._chunk_sizes
        if self._chunk_router is not self.router or len(sizes) > _CHUNK_SIZES_MAX:
            sizes.clear()  # (kept per router: a reload makes a new one)
            self._chunk_router = self.router
        size = sizes.get(channel)
        if size is None:
            routes = max(1, len(self._message_routes(channel)))
            size = max(
                1, min(self.options.submit_chunk, self.config.delivery.buffer_size // (4 * routes))
            )
            sizes[channel] = size
        return size
