"""The dispatcher's intake: events routed, made into envelopes and queued for their sinks.

This module owns :class:`Intake`, the part of :class:`~.dispatch.Dispatcher`
that takes events in: one envelope per event and route that takes it
(:meth:`Intake._envelopes`), the in-memory dedup check, the size limit, one
job per target queued in its sink's FIFO and the event recorded in the
delivery ledger (:meth:`Intake._accept_frames`).

Several frames are taken in one call (:meth:`~.dispatch.Dispatcher.submit_frames`):
at one message per frame over many channels the work per call (the dedup
lock round, the plan per sink, the ledger and the dead letters) cost as much
as the work per message. Back-pressure stays per frame and per channel: a
frame whose jobs do not all fit is refused whole, and so is every later frame
of its channel in the call (its events must keep their order), while other
channels' frames may still go in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.config import BridgeConfig, Source, Target
from ably_bridge.bridge.core.ledger import DeliveryLedger, Entry
from ably_bridge.bridge.core.position import Position, presence_track
from ably_bridge.bridge.deadletter import DeadLetter, Reason
from ably_bridge.bridge.dedup import DedupWindow
from ably_bridge.bridge.fencing import Fence, Fencing
from ably_bridge.bridge.retry import RetryPolicy, SinkBuffer
from ably_bridge.bridge.router import RouteMatch, Router
from ably_bridge.bridge.secret import Secret, cipher_for
from ably_bridge.bridge.sinks.base import Delivery, Sink
from ably_bridge.clock import Clock
from ably_bridge.envelope import Envelope, EnvelopeBuilder, UndecodableEvent

if TYPE_CHECKING:
    import random

    from ably_bridge.bridge.dispatch import DispatchStats
    from ably_bridge.encoding.crypto import ChannelCipher

__all__ = ["Frame", "Intake", "Job"]

logger = logging.getLogger("ably_bridge.bridge.dispatch")  # the dispatcher's log, as before

_Event = Entry[Envelope, Fence]
_TARGETS_MAX = 1024  # targets whose sink buffer is kept (bounded: reloads make new ones)
# One frame's envelopes: (route match, envelope or None, None or (event, decoding error)).
Frame = list[tuple[RouteMatch, Envelope | None, Any]]


def cipher(key: Secret | None) -> ChannelCipher | None:
    return None if key is None else cipher_for(key)


@dataclass(slots=True)
class Job:  # (one per event and target: not frozen, which would cost 3x to make)
    delivery: Delivery
    event: _Event


class Intake:
    """Part of :class:`~.dispatch.Dispatcher` (see the module docstring)."""

    config: BridgeConfig
    fencing: Fencing | None
    router: Router
    stats: DispatchStats
    _clock: Clock
    _rng: random.Random
    _sink_for: Callable[[Target], Sink]
    _builder: EnvelopeBuilder
    _policy: RetryPolicy
    _max_bytes: int
    _window: DedupWindow
    _sinks: dict[int, Sink]
    _targets: dict[int, tuple[Target, tuple[int, SinkBuffer[Job]]]]
    _buffers: dict[int, SinkBuffer[Job]]
    _ledger: DeliveryLedger[Envelope, Fence]

    if TYPE_CHECKING:

        def _remember_finished(self) -> None: ...

        def _dead_letter(self, letters: list[DeadLetter]) -> None: ...

    def _envelopes(self, channel: str, source: Source, messages: Sequence[Any]) -> Frame:
        """One envelope per message and route that takes it; None with the message and
        the error where it cannot be decoded (it goes to the dead letters)."""
        now = self._clock.time_ms()
        is_message = source == "message"
        build = self._builder.message if is_message else self._builder.presence
        envs: Frame = []
        for msg in messages:
            for match in self.router.match(channel, source, msg.name if is_message else None):
                route = match.route
                if (
                    is_message
                    and route.actions is not None
                    and not route.takes(getattr(msg, "action", None))
                ):
                    continue
                key = match.cipher_key
                try:
                    env = build(
                        channel, msg, route.id, mode=route.data,
                        cipher=None if key is None else cipher_for(key), now_ms=now,
                    )  # fmt: skip
                except UndecodableEvent as err:
                    envs.append((match, None, (msg, err)))
                    continue
                envs.append((match, env, None))
        return envs

    def _buffer_for(self, target: Target) -> tuple[int, SinkBuffer[Job]] | None:
        """The sink buffer of ``target`` (and its key), kept per target: asked per event."""
        hit = self._targets.get(id(target))
        if hit is not None and hit[0] is target:
            return hit[1]
        try:
            sink = self._sink_for(target)
        except Exception as exc:
            logger.error("no sink for a %s target: %s", target.kind, exc)
            return None
        key = id(sink)
        buffer = self._buffers.get(key)
        if buffer is None:
            self._sinks[key] = sink
            buffer = SinkBuffer(
                self.config.delivery.buffer_size, self._policy, self._clock, self._rng
            )
            self._buffers[key] = buffer
        if len(self._targets) >= _TARGETS_MAX:
            self._targets.clear()
        # (the target is kept with its answer, so that its id is not reused meanwhile)
        self._targets[id(target)] = (target, (key, buffer))
        return key, buffer

    def _accept_frames(self, source: Source, frames: Sequence[tuple[str, Frame]]) -> list[bool]:
        """Queue each frame's envelopes (see the module docstring); per frame, whether it
        was taken (False: nothing of it queued, back-pressure)."""
        # One lock round for the in-memory dedup check of every frame.
        seen = self._window.seen(
            [env.route_key for _, envs in frames for _, env, _ in envs if env is not None]
        )
        free: dict[int, int] = {}  # sink key -> room left in its buffer after this call
        plan: dict[int, tuple[SinkBuffer[Job], list[Job]]] = {}
        refused: set[str] = set()
        letters: list[DeadLetter] = []
        taken: list[bool] = []
        for channel, envs in frames:
            if channel in refused:
                taken.append(False)
                continue
            frame_letters: list[DeadLetter] = []
            events, jobs = self._plan_frame(channel, source, envs, seen, frame_letters)
            fits = True
            for key, (buffer, js) in jobs.items():
                room = free.get(key)
                if room is None:
                    room = free[key] = buffer.free
                if len(js) > room:
                    fits = False
            if not fits:
                refused.add(channel)
                taken.append(False)
                self.stats.refused += 1
                logger.warning("back-pressure: sink buffer full, %d event(s) refused", len(envs))
                continue
            for key, (buffer, js) in jobs.items():
                free[key] -= len(js)
                planned = plan.get(key)
                if planned is None:
                    plan[key] = (buffer, js)
                else:
                    planned[1].extend(js)
            self._ledger.record(channel, events)
            self.stats.accepted += len(events)
            letters.extend(frame_letters)
            taken.append(True)
        for buffer, js in plan.values():
            buffer.offer(js)
        self._remember_finished()
        if letters:
            self._dead_letter(letters)
        return taken

    def _plan_frame(
        self,
        channel: str,
        source: Source,
        envs: Frame,
        seen: set[str],
        letters: list[DeadLetter],
    ) -> tuple[list[_Event], dict[int, tuple[SinkBuffer[Job], list[Job]]]]:
        """One frame's ledger entries and its jobs per sink buffer; its dead letters
        (undecodable, oversized, no sink) into ``letters``."""
        events: list[_Event] = []
        jobs: dict[int, tuple[SinkBuffer[Job], list[Job]]] = {}
        fence = self.fencing.fence(channel) if self.fencing is not None else None
        positioned = source != "lifecycle"
        presence = source == "presence"
        max_bytes = self._max_bytes
        targets = self._targets
        for match, env, problem in envs:
            route = match.route
            if env is None:
                raw, err = problem
                letters.append(
                    DeadLetter(
                        Reason.UNDECODABLE, route.id, channel, raw, err.code, err.message,
                        f"channel.{source}", getattr(raw, "id", None) or "",
                    )
                )  # fmt: skip
                continue
            if seen and env.route_key in seen:
                self.stats.skipped += 1
                continue
            size = env.size()
            if size > max_bytes:
                letters.append(
                    DeadLetter(
                        Reason.OVERSIZED, route.id, channel, env, 40009,
                        f"envelope is {size} bytes; limit {max_bytes}",
                    )
                )  # fmt: skip
                continue
            position = Position(env.timestamp, env.event_id, env.serial) if positioned else None
            track = presence_track(route.id) if presence else route.id
            event: _Event = Entry(env, position, 0, track, fence=fence)
            for target in route.targets:
                hit = targets.get(id(target))  # (_buffer_for's answer, looked up here)
                found = hit[1] if hit is not None and hit[0] is target else self._buffer_for(target)
                if found is None:
                    letters.append(
                        DeadLetter(
                            Reason.UNKNOWN_TARGET, route.id, channel, env, 0,
                            f"no sink for {target.kind} target",
                        )
                    )  # fmt: skip
                    continue
                key, buffer = found
                job = Job(Delivery(env, target, fence), event)
                planned = jobs.get(key)
                if planned is None:
                    jobs[key] = (buffer, [job])
                else:
                    planned[1].append(job)
                event.remaining += 1
            events.append(event)
        return events, jobs
