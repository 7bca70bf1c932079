"""The daemon's channel set and lifecycle driver: which channels, and performing the
transitions :mod:`.core.lifecycle` decides.

This module owns the :class:`ChannelsMixin` part of :class:`~.daemon.Daemon`:
the channels wanted (configured, discovered, owned shards), ``_feed`` (an input
to the transition table) and ``_perform`` (its effects: attach through the
source with listeners that only enqueue, detach, drop held events, backfill,
go live, retry later), source state changes, and back-pressure (pause, resume).
Everything runs on the delivery thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ably_bridge.bridge.core import lifecycle as lc
from ably_bridge.bridge.core.shards import shard_of
from ably_bridge.bridge.daemon_state import DaemonState
from ably_bridge.bridge.source import (
    SourceHandlers,
    StateChange,
)
from ably_bridge.bridge.tracks import (
    ChannelTrack,
    Live,
)
from ably_bridge.envelope import LIFECYCLE_EVENTS
from ably_bridge.protocol.models import Message, PresenceMessage

__all__ = ["ChannelsMixin"]

logger = logging.getLogger("ably_bridge.bridge.daemon")


class ChannelsMixin(DaemonState):
    """Part of :class:`~.daemon.Daemon` (see the module docstring)."""

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
            self._start_backfill(track, effect.attach_serial)
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
