"""The daemon's per-channel state, inbox items, options and an inline executor.

This module owns the plain data the delivery thread (:mod:`.daemon`) works
on: :class:`ChannelTrack` (one channel's phase, attachment epoch, the events
waiting for the dispatcher, retry timers), the items listeners and background
jobs put in the inbox (:class:`Live`, :class:`BackfillDone`,
:class:`Discovered`, :class:`Call`), :class:`DaemonOptions` and
:class:`InlineExecutor` (jobs run at once, for tests).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.bridge.backfill_versions import event_key
from ably_bridge.bridge.core.lifecycle import PHASES as LIFECYCLE_PHASES
from ably_bridge.bridge.retry import RetryPolicy
from ably_bridge.protocol.models import Message, PresenceMessage

__all__ = [
    "GAUGE_INTERVAL",
    "MANY_CHANNELS",
    "PHASES",
    "SCAN_INTERVAL",
    "BackfillDone",
    "Call",
    "ChannelTrack",
    "DaemonOptions",
    "Discovered",
    "Gap",
    "InlineExecutor",
    "Live",
    "weight",
]

logger = logging.getLogger(__name__)
# With MANY_CHANNELS channels or more, what walks every channel no longer runs
# after every step (a walk over 10,000 channels costs ~0.3-0.5 ms): the gauges are
# refreshed at most every GAUGE_INTERVAL seconds, and the per-channel timers
# (re-attach, backfill retry, attach watchdog) and paused channels are looked at
# every SCAN_INTERVAL seconds, so such a timer may fire that much late.
MANY_CHANNELS = 1_000
GAUGE_INTERVAL = 0.25
SCAN_INTERVAL = 0.05

# The phases a channel moves through (the transition table is core/lifecycle.py's).
PHASES = LIFECYCLE_PHASES


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """Knobs of the daemon that are not part of the bridge configuration file."""

    resume_fraction: float = 0.25  # resume paused channels below this share of the buffer
    reattach_delay: float = 5.0  # after FAILED, or DETACHED without a client re-attach
    attach_watchdog: float = 60.0  # re-attach a channel stuck this long before ATTACHED
    backfill_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(0.5, multiplier=2.0, max_delay=30.0, jitter=0.2)
    )
    submit_chunk: int = 50  # backfilled messages per submit (all-or-nothing each)
    max_inbox_per_step: int = 2000  # events (a live item counts its messages) per step
    max_pumps_per_step: int = 20
    tick: float = 0.2  # longest wait in run(): signals and timers are checked this often
    seed_skew_ms: int = 5000  # a first-attach seed checkpoint is this far in the past
    drain_timeout: float = 30.0
    maintain_interval: float = 5.0  # connection pool: rate measurement and moves
    # The start watermark (core/start_points.py): raised this often; a start point
    # decided within start_floor_grace of the start is floored with the previous
    # run's, at most start_floor_max_age back.
    watermark_interval: float = 1.0
    start_floor_grace: float = 120.0
    start_floor_max_age: float = 900.0
    # Checkpoints are saved at most this often (seconds) while events keep being
    # confirmed, instead of after every sink call; the first save after a quiet
    # spell is immediate, shutdown flushes. 0: save after every pump.
    checkpoint_interval: float = 0.05


@dataclass(slots=True)
class ChannelTrack:
    """The daemon's state of one channel."""

    name: str
    epoch: int = 0
    phase: str = "attaching"
    # Events accepted from the source but not yet by the dispatcher, in order:
    # the backfill, then live events that arrived during it or while a sink
    # buffer was full. ``held_live`` counts the live events (messages and
    # presence messages, not items: a frame is one item) and is bounded.
    pending: deque[Live] = field(default_factory=deque)
    held_live: int = 0
    attach_serial: str | None = None
    backfill_seq: int = 0
    backfill_failures: int = 0
    retry_at: float | None = None  # monotonic: re-attach (failed) or backfill retry
    attach_started: float = 0.0  # monotonic time of the last attach request
    source_state: str = "initialized"
    live_once: bool = False  # went live in this epoch (a resumed re-attach needs no backfill)
    lookback: float = 0.0  # discovered: backfill this far before a first attach (seconds)
    attachment: int = 0  # the daemon's number of the current attach request

    def clear(self) -> None:
        """Forget waiting events (they are after the checkpoint: history replays them)."""
        self.pending.clear()
        self.held_live = 0

    def put_gap_first(
        self, messages: list[Message], chunk: int, presence: list[PresenceMessage] | None = None
    ) -> None:
        """Queue a backfill (messages, then presence events) ahead of the live events
        held meanwhile, ``chunk`` at a time.

        A live event that is in the history too (a message below the attach point
        from a late listener; a presence event, whose history reads up to now) is
        dropped: the history's copy, which is in order, is kept.
        """
        presence = presence or []
        # A message's update, delete or append has the message's id: compare event keys.
        gaps = (("messages", event_key, {event_key(m) for m in messages} - {None}),
                ("presence", _presence_id, {p.id for p in presence if p.id}))  # fmt: skip
        for kind, key, in_gap in gaps:
            if not in_gap:
                continue
            for item in self.pending:
                if item.kind == kind and any(key(m) in in_gap for m in item.payload):
                    kept = [m for m in item.payload if key(m) not in in_gap]
                    if item.epoch >= 0:
                        self.held_live -= len(item.payload) - len(kept)
                    item.payload[:] = kept
        gap = [
            Live(self.name, -1, "messages", messages[i : i + chunk])
            for i in range(0, len(messages), chunk)
        ]
        gap += [
            Live(self.name, -1, "presence", presence[i : i + chunk])
            for i in range(0, len(presence), chunk)
        ]
        self.pending.extendleft(reversed(gap))  # epoch -1: not counted as held live


def _presence_id(event: PresenceMessage) -> str | None:
    return event.id


@dataclass(slots=True)
class Live:
    """An event from the source for one attachment (``epoch``) of a channel.

    ``epoch`` -1 marks backfilled messages queued in :attr:`ChannelTrack.pending`.
    Not frozen, though nothing changes one: the reading thread makes one per
    inbound frame, and a frozen dataclass costs three times as much to build.
    """

    channel: str
    epoch: int
    kind: str  # messages | presence | sync | state
    payload: Any


@dataclass(frozen=True, slots=True)
class Gap:
    """What a backfill read: missed messages and presence events, oldest first."""

    messages: list[Message]
    presence: list[PresenceMessage] = field(default_factory=list)
    presence_unavailable: bool = False  # the channel's presence history could not be read
    seed_ms: int | None = None  # the start point used (floored by the start watermark)
    loaded_floor: Any = None  # what the job loaded of the start watermark (watermark.UNKNOWN)


@dataclass(frozen=True, slots=True)
class BackfillDone:
    """A backfill job finished (its future holds the :class:`Gap` or the error)."""

    channel: str
    epoch: int
    seq: int
    future: Future[Gap]
    floor: tuple[str, Any] | None = None  # (scope, what the watermark said at submit)


@dataclass(frozen=True, slots=True)
class Discovered:
    """A discovery poll finished."""

    prefix: str
    future: Future[list[str]]


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn`` on the delivery thread."""

    fn: Callable[[], None]


class InlineExecutor(Executor):
    """Runs each job at once on the caller's thread (for tests and sans-thread runs)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the daemon through the future
            future.set_exception(exc)
        return future


def weight(item: Live) -> int:
    """How many events a held live item counts for (``held_live`` bounds events, not items)."""
    if item.kind in ("messages", "presence"):
        return len(item.payload)
    return 1
