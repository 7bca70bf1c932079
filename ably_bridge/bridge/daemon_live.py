"""The daemon's live events: from the inbox to the dispatcher, in order.

This module owns the :class:`LiveMixin` part of :class:`~.daemon.Daemon`: a
frame's messages joined with the frames queued behind it (``_coalesce``), live
events submitted at once when nothing waits, else held in order behind a
backfill or a full sink buffer (bounded: past it the channel is paused), and
the held ones drained as the dispatcher takes them. Live message frames are
staged and submitted together (``_flush_staged``: one dispatcher call for the
frames of many channels, :meth:`~.dispatch.Dispatcher.submit_frames`).
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from ably_bridge.bridge.daemon_state import DaemonState
from ably_bridge.bridge.tracks import (
    ChannelTrack,
    Live,
    weight,
)

__all__ = ["LiveMixin"]

logger = logging.getLogger("ably_bridge.bridge.daemon")


class LiveMixin(DaemonState):
    """Part of :class:`~.daemon.Daemon` (see the module docstring)."""

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

    def _on_live(self, item: Live) -> None:
        if item.kind == "messages":
            self._received_messages += len(item.payload)  # (counted at _flush_staged)
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
        if track.phase == "live" and not track.pending:
            if item.kind == "messages":
                # Submitted with the frames around it (_flush_staged), in order.
                self._staged.append((track, item))
                return
            if self._try_submit(track, item):
                return
        self._hold(track, item)

    def _hold(self, track: ChannelTrack, item: Live) -> None:
        if track.phase in ("live", "backfilling", "attaching"):
            # Behind a backfill or a full sink buffer, or ahead of a state change
            # that another listener has not delivered yet: keep them in order,
            # bounded. Received events are never dropped here; a later backfill
            # replaces only those it also returns (by id).
            track.pending.append(item)
            self._waiting.add(track.name)
            track.held_live += weight(item)
            if track.held_live > self.config.delivery.buffer_size:
                self._pause(track, "sink buffers full and too many live events waiting")
        # paused/failed/stopped: the epoch moved on, so nothing reaches here

    def _flush_staged(self) -> None:
        """Submit the staged live frames in one call, in order; a refused one is held
        (as is every later frame of its channel: the dispatcher refuses them too).

        Called before anything else can look at a channel's state (any other inbox
        item, the timers, the pumps): until then only message frames are staged.
        The messages received meanwhile are counted here too (one lock round).
        """
        if self._received_messages:
            self.metrics.received.inc(self._received_messages, "message")
            self._received_messages = 0
        staged = self._staged
        if not staged:
            return
        self._staged = []
        taken = self.dispatcher.submit_frames(
            [(track.name, item.payload) for track, item in staged]
        )
        for (track, item), ok in zip(staged, taken, strict=True):
            if not ok and track.epoch == item.epoch:  # (else: paused by an earlier part)
                self._hold(track, item)

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
        """Submit the channel's waiting events in order until one is refused.

        Each call counts in ``metrics.held_drains``: how often held events were
        offered again (and, for tests, that only channels holding some are visited).
        """
        self.metrics.held_drains.inc()
        pending = track.pending
        while pending and track.phase == "live":
            item = pending[0]
            if not self._try_submit(track, item):
                return
            pending.popleft()
            if item.epoch >= 0:
                track.held_live -= weight(item)
