"""The dispatcher: one event through routes, sinks, retries, dead letters and checkpoints.

This module owns :class:`Dispatcher`, the part of the daemon's data path that
needs no realtime connection::

    submit_*(channel, events) -> router -> Envelope per route -> per-sink FIFO
    pump() -> sink.deliver(batch) -> results -> dead letters / retry / checkpoint

(The intake - routing, envelopes, dedup window, queueing, several frames per
call with ``submit_frames`` - is :mod:`.dispatch_intake`.)

* **At-least-once**: an event counts as done only when every target of its
  route confirmed it (delivered or already there) or it was dead-lettered; the
  (route, channel) checkpoint advances over the longest *contiguous* run of
  done events, so a slow or failing target holds it back. The delivery ledger
  (:mod:`.core.ledger`) does that accounting, per track (a route's presence
  events have a track and a checkpoint of their own, replayed from presence
  history); :mod:`.checkpoint_saver` writes what it allows, spaced by
  ``checkpoint_interval`` (:meth:`Dispatcher.next_wakeup` includes the next
  save; :meth:`Dispatcher.flush_checkpoints` saves at once).
* **Outages**: each sink has a bounded FIFO with exponential backoff and jitter
  (:class:`~ably_bridge.bridge.retry.SinkBuffer`); a full buffer makes
  ``submit_*`` return False (accept nothing) so the daemon can pause the channel
  and later replay from the checkpoint.
* **Poison events** never block: undecodable, oversized, unknown-target and
  permanently rejected events go to the dead-letter stream.
* **Duplicates**: an event a route already finished recently (in-memory
  :class:`~ably_bridge.bridge.dedup.DedupWindow`) is skipped before any I/O;
  the sinks de-duplicate durably.
* **Shards** (:mod:`.sharding`): a delivery a sink refuses as ``FENCED`` (this
  replica lost the channel's shard) is dropped - not dead-lettered, not
  remembered as done, and its position never reaches a checkpoint: the new
  owner delivers it. :meth:`Dispatcher.forget_channels` drops the queued work
  of channels whose shard was lost; :meth:`Dispatcher.unsettled_channels` tells
  when a shard being handed over has nothing in flight any more.

Single-threaded by design: the daemon calls ``submit_*`` and ``pump`` from its
one delivery thread (listeners hand events over through a queue).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.checkpoint import CheckpointStore, Position
from ably_bridge.bridge.checkpoint_saver import CheckpointSaver
from ably_bridge.bridge.config import BridgeConfig, Route, Target
from ably_bridge.bridge.core.ledger import LAST_SETTLED_MAX, DeliveryLedger
from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.bridge.dedup import DedupWindow
from ably_bridge.bridge.dispatch_intake import Frame, Intake, Job, cipher
from ably_bridge.bridge.fencing import Fence, Fencing
from ably_bridge.bridge.presence_snapshot import PresenceSnapshot
from ably_bridge.bridge.retry import RetryPolicy, SinkBuffer
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.secret import redact_text
from ably_bridge.bridge.sinks.base import Outcome, Sink, sink_label
from ably_bridge.bridge.snapshot_upkeep import SnapshotUpkeep
from ably_bridge.clock import Clock, SystemClock
from ably_bridge.envelope import (
    Envelope,
    EnvelopeBuilder,
    MessageLike,
    PresenceMessageLike,
)
from ably_bridge.errors import AblyException

if TYPE_CHECKING:
    pass

__all__ = ["LAST_SETTLED_MAX", "DispatchStats", "Dispatcher"]

logger = logging.getLogger(__name__)


def _why(error: BaseException | None) -> str:
    """A delivery failure in one redacted line: its type and what it said."""
    if error is None:
        return "no answer"
    text = " ".join(str(error).split())
    return redact_text(f"{type(error).__name__}: {text}" if text else type(error).__name__)


@dataclass(slots=True)
class DispatchStats:
    """Counters for health and metrics."""

    accepted: int = 0
    delivered: int = 0
    duplicates: int = 0
    skipped: int = 0  # in-memory dedup hits
    dead_lettered: int = 0
    retries: int = 0
    refused: int = 0  # submit_* refused for back-pressure
    checkpoints: int = 0
    fenced: int = 0  # deliveries refused by a shard fence (another replica owns the channel)
    by_reason: dict[str, int] = field(default_factory=dict)


class Dispatcher(Intake):
    """Routes events to sinks and settles them (see the module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        sink_for: Callable[[Target], Sink],
        dead_letters: DeadLetterWriter | None = None,
        checkpoints: CheckpointStore | None = None,
        snapshot_for: Callable[[Route], PresenceSnapshot | None] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        router: Router | None = None,
        fencing: Fencing | None = None,
        checkpoint_interval: float = 0.0,
    ) -> None:
        self.config = config
        self.fencing = fencing
        self.router = router or Router(config.routes)
        self.stats = DispatchStats()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._sink_for = sink_for
        self._dead = dead_letters
        self._builder = EnvelopeBuilder(config.app_id, config.site)
        self._policy = RetryPolicy.from_settings(config.delivery.retry)
        self._batch = config.delivery.batch_size
        self._max_bytes = config.delivery.max_event_bytes
        self._window = DedupWindow(config.delivery.dedup_window)
        self._sinks: dict[int, Sink] = {}
        # id(target) -> (target, (sink key, its buffer)): asked once per event and target
        self._targets: dict[int, tuple[Target, tuple[int, SinkBuffer[Job]]]] = {}
        self._buffers: dict[int, SinkBuffer[Job]] = {}
        self._ledger: DeliveryLedger[Envelope, Fence] = DeliveryLedger()
        self._saver = CheckpointSaver(checkpoints, self._ledger, self._clock, checkpoint_interval)
        self._snapshots = (
            SnapshotUpkeep(snapshot_for, self._builder, cipher)
            if snapshot_for is not None
            else None
        )

    @property
    def last_settled(self) -> dict[tuple[str, str], tuple[Position, int]]:
        """(track, channel) -> the last event settled in order and when (epoch ms);
        read by the status endpoint (:mod:`.status`), bounded by LAST_SETTLED_MAX."""
        return self._ledger.last_settled

    # -- intake ---------------------------------------------------------------------
    def submit_messages(self, channel: str, messages: Sequence[MessageLike]) -> bool:
        """Route and queue channel messages; False (nothing queued) under back-pressure."""
        return self._accept_frames(
            "message", [(channel, self._envelopes(channel, "message", messages))]
        )[0]

    def submit_frames(self, frames: Sequence[tuple[str, Sequence[MessageLike]]]) -> list[bool]:
        """:meth:`submit_messages` for several (channel, messages) frames in one call, in
        order; per frame whether it was taken. A refused frame refuses the later frames
        of its channel in the call too (they would overtake it); other channels' frames
        may still be taken (:mod:`.dispatch_intake`)."""
        envelopes = self._envelopes
        return self._accept_frames(
            "message", [(channel, envelopes(channel, "message", msgs)) for channel, msgs in frames]
        )

    def submit_presence(self, channel: str, messages: Sequence[PresenceMessageLike]) -> bool:
        """Route and queue presence messages; updates presence snapshots."""
        envs = self._envelopes(channel, "presence", messages)
        accepted = self._accept_frames("presence", [(channel, envs)])[0]
        if accepted and self._snapshots is not None:
            self._snapshots.apply(envs)
        return accepted

    def presence_synced(self, channel: str, members: Sequence[PresenceMessageLike]) -> None:
        """A presence SYNC completed: replace each snapshot of ``channel`` with ``members``."""
        if self._snapshots is not None:
            self._snapshots.synced(channel, self.router.match(channel, "presence"), members)

    def submit_lifecycle(
        self,
        channel: str,
        event: Any,
        *,
        previous: Any = None,
        current: Any = None,
        reason: AblyException | None = None,
        resumed: bool | None = None,
    ) -> bool:
        """Route and queue a channel state change (``channel.attached`` etc.)."""
        now = self._clock.time_ms()
        envs: Frame = []
        for match in self.router.match(channel, "lifecycle"):
            env = self._builder.lifecycle(
                channel,
                event,
                match.route.id,
                now_ms=now,
                previous=previous,
                current=current,
                reason=reason,
                resumed=resumed,
            )
            envs.append((match, env, None))
            if self._snapshots is not None and env.name in ("channel.detached", "channel.failed"):
                self._snapshots.clear(match.route, channel)
        return self._accept_frames("lifecycle", [(channel, envs)])[0]

    # -- delivery -------------------------------------------------------------------
    def pump(self, max_batches: int | None = None) -> int:
        """Deliver one batch from every ready sink buffer; the number of deliveries tried."""
        tried = 0
        batches = 0
        touched: set[tuple[str, str]] = set()
        for key, buffer in self._buffers.items():
            if max_batches is not None and batches >= max_batches:
                break
            if not buffer.ready():
                continue
            jobs = buffer.take(self._batch)
            batches += 1
            tried += len(jobs)
            self._deliver(self._sinks[key], buffer, jobs, touched)
        self._advance_checkpoints(touched)
        return tried

    def drain(self, max_rounds: int = 1000) -> None:
        """Pump until nothing is ready (for tests and shutdown; does not wait out backoff)."""
        for _ in range(max_rounds):
            if self.pump() == 0:
                break

    def next_wakeup(self) -> float | None:
        """Seconds until some buffer is ready or a deferred checkpoint save is due (0: now),
        or None when there is nothing to do."""
        waits = [w for b in self._buffers.values() if (w := b.seconds_until_ready()) is not None]
        if (due := self._saver.seconds_until_due()) is not None:
            waits.append(due)
        return min(waits) if waits else None

    def flush_checkpoints(self) -> None:
        """Save the checkpoints not saved yet now, whatever the save interval (shutdown)."""
        self._advance_checkpoints((), force=True)

    def pending(self) -> int:
        """Deliveries waiting in sink buffers."""
        return sum(len(b) for b in self._buffers.values())

    def healthy(self) -> bool:
        """No sink is backing off."""
        return not any(b.backing_off for b in self._buffers.values())

    def checkpoint_lag(self, now_ms: int) -> float:
        """Seconds since the oldest event that holds a checkpoint back was sent (0: none)."""
        return self._ledger.checkpoint_lag(now_ms)

    def backlog(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(route id, channel) -> (events not settled yet, timestamp of the oldest) for
        every pair with some; safe to call from another thread (a copy, read once)."""
        return self._ledger.backlog()

    def unsettled_channels(self) -> set[str]:
        """Channels with events not yet confirmed or checkpoints not yet saved."""
        return self._ledger.unsettled_channels()

    def forget_channels(self, channels: set[str]) -> int:
        """Drop all queued work of ``channels`` (their shard was lost); how many deliveries.

        Nothing of it may reach a sink or a checkpoint any more: the shard's new
        owner delivers these events from the checkpoint.
        """
        if not channels:
            return 0
        dropped = 0
        for buffer in self._buffers.values():
            dropped += buffer.discard(lambda job: job.delivery.envelope.channel in channels)
        self._ledger.forget(channels)
        return dropped

    # -- internals ------------------------------------------------------------------
    def _deliver(
        self,
        sink: Sink,
        buffer: SinkBuffer[Job],
        jobs: list[Job],
        touched: set[tuple[str, str]],
    ) -> None:
        try:
            results = sink.deliver([j.delivery for j in jobs])
        except Exception as exc:  # a sink broke its contract; treat as an outage
            logger.exception("sink %s raised from deliver", sink_label(sink))
            results = [None] * len(jobs)  # type: ignore[list-item]
            error: BaseException | None = exc
        else:
            error = None
        letters: list[DeadLetter] = []
        retry_from: int | None = None
        for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
            if result is None or result.outcome is Outcome.RETRY:
                retry_from = i
                if result is not None:
                    error = result.error
                break
            env = job.delivery.envelope
            if result.outcome is Outcome.REJECTED:
                why = result.error
                letters.append(
                    DeadLetter(
                        Reason.REJECTED, env.rule_id, env.channel, env,
                        getattr(why, "code", 0) or 0, f"{type(why).__name__}: {why}",
                    )
                )  # fmt: skip
            elif result.outcome is Outcome.DUPLICATE:
                self.stats.duplicates += 1
            elif result.outcome is Outcome.FENCED:
                self.stats.fenced += 1
                job.event.fenced = True
            else:
                self.stats.delivered += 1
            self._ledger.target_done(job.event, touched)
        if retry_from is None:
            buffer.succeeded()
        else:
            rest = jobs[retry_from:]
            self.stats.retries += 1
            delay = buffer.failed()
            if self._policy.exhausted(buffer.failures):
                for job in rest:
                    env = job.delivery.envelope
                    letters.append(
                        DeadLetter(
                            Reason.RETRIES_EXHAUSTED, env.rule_id, env.channel, env, 0,
                            f"{type(error).__name__}: {error}",
                        )
                    )  # fmt: skip
                    self._ledger.target_done(job.event, touched)
                buffer.succeeded()
            else:
                buffer.put_back(rest)
                logger.warning(
                    "sink %s: %d deliveries to retry in %.2fs (attempt %d): %s",
                    sink_label(sink),
                    len(rest),
                    delay,
                    buffer.failures,
                    _why(error),
                )
        self._remember_finished()
        self._dead_letter(letters)

    def _remember_finished(self) -> None:
        """Put the events settled by this call into the dedup window, in one lock round."""
        if self._ledger.finished:
            envs = self._ledger.take_finished()
            self._window.add_many([env.route_key for env in envs])

    def _advance_checkpoints(
        self, touched: Iterable[tuple[str, str]], *, force: bool = False
    ) -> None:
        self.stats.checkpoints += self._saver.advance(touched, force=force)

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        self.stats.dead_lettered += len(letters)
        for letter in letters:
            name = str(letter.reason)
            self.stats.by_reason[name] = self.stats.by_reason.get(name, 0) + 1
        if self._dead is not None:
            self._dead.write_many(letters)
        else:
            for letter in letters:
                logger.error(
                    "dead letter (no stream configured): %s on %s", letter.reason, letter.channel
                )
