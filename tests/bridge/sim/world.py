"""The simulated world the bridge runs in: Ably channels, sinks, checkpoints, jobs.

Everything here is deterministic given the seed's random generator and the
simulated clock; nothing sleeps, opens a socket or starts a thread.

* :class:`SimAbly` - channels with message and presence history (a retention
  window), live delivery to the attached listeners, connection drops that
  resume (nothing missed), continuity losses (events published meanwhile are
  not delivered live), SUSPENDED, and discovery listings (channels with
  history). Built on :class:`~ably_bridge.bridge.source.FakeSource`.
* :class:`SimSink` - a sink that can be up, down (every delivery RETRY),
  slow (one delivery per call, each call taking simulated time), rejecting
  (some events REJECTED for good) or partial (the tail of a batch RETRY); what
  it wrote and its de-duplication marks persist across crashes.
* :class:`SimCheckpoints` - forward-only checkpoints (as the Redis script),
  down or up, persisted across crashes; every advance is reported to the
  checker first.
* :class:`SimExecutor` - background jobs (backfills, discovery polls) held
  until the scenario runs them, in any order.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.bridge.core.position import Position
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result
from ably_bridge.bridge.source import FakeSource, after_position
from ably_bridge.protocol.models import Message, PresenceMessage


class SimAbly(FakeSource):
    """Ably for the simulation (see the module docstring)."""

    def __init__(self, time_ms: Callable[[], int], retention_ms: int) -> None:
        super().__init__(time_ms=time_ms)
        self.retention_ms = retention_ms
        # Channels whose live delivery is cut (the connection dropped), with what
        # they missed meanwhile, in order (a resume delivers it: RTN15c6).
        self.missed: dict[str, list[tuple[str, Any]]] = {}

    def expire(self) -> None:
        """Drop history older than the retention window."""
        cutoff = self._time_ms() - self.retention_ms
        with self._lock:
            for ch in self._channels.values():
                ch.history = [m for m in ch.history if (m.timestamp or 0) >= cutoff]
                ch.presence_history = [
                    p for p in ch.presence_history if (p.timestamp or 0) >= cutoff
                ]

    def publish_live(self, channel: str) -> Message:
        missed = self.missed.get(channel)
        message = self.publish(channel, "e", None, deliver=missed is None)
        if missed is not None:
            missed.append(("messages", message))
        return message

    def presence_live(self, channel: str, action: int, who: str) -> PresenceMessage:
        missed = self.missed.get(channel)
        event = self.presence_event(channel, action, who, deliver=missed is None)
        if missed is not None:
            missed.append(("presence", event))
        return event

    def cut(self, channel: str) -> None:
        """Live delivery stops (the connection dropped; the channel stays attached)."""
        self.missed.setdefault(channel, [])

    def restore(self, channel: str, *, resumed: bool) -> None:
        """Live delivery comes back: resumed (what was missed is delivered live, in
        order) or not (ATTACHED without RESUMED: continuity lost)."""
        missed = self.missed.pop(channel, None)
        if missed is None:
            return
        with self._lock:
            ch = self.channel(channel)
            handlers = ch.handlers if ch.state == "attached" else None
        if handlers is None:
            return
        if not resumed:
            self.complete_attach(channel)
            return
        for kind, item in missed:
            if kind == "messages":
                handlers.messages([item])
            else:
                handlers.presence([item])

    def list_channels(self, prefix: str) -> list[str]:
        """Active channels: any with messages or presence events."""
        with self._lock:
            names = {n for n, c in self._channels.items() if c.history or c.presence_history}
        return sorted(n for n in names if n.startswith(prefix))

    def attach(self, channel: str, handlers: Any, **kw: Any) -> None:
        if self.refuse_attach:
            raise ConnectionError("attach refused")
        self.missed.pop(channel, None)  # a new attachment: its attach point covers them
        FakeSource.attach(self, channel, handlers, **kw)

    refuse_attach = False

    def crash(self) -> None:
        """The bridge process died: its connection and attachments are gone."""
        self.missed.clear()
        with self._lock:
            for ch in self._channels.values():
                ch.handlers = None
                ch.state = "detached"
        self.closed, self.state = False, "connected"


def _after(item: Message | PresenceMessage, position: Position) -> bool:
    return after_position(item, position) is not False


@dataclass
class SinkState:
    """What a sink persisted (it survives a bridge crash)."""

    records: dict[str, list[str]] = field(default_factory=dict)  # destination -> dedup keys
    marks: set[tuple[str, str]] = field(default_factory=set)
    dead: list[tuple[str, str]] = field(default_factory=list)  # (destination, key) rejected


class SimSink:
    """A sink of the simulation; ``mode``: up | down | rejecting | partial."""

    def __init__(
        self, name: str, rng: random.Random, state: SinkState,
        advance: Callable[[float], None] = lambda seconds: None,
    ) -> None:  # fmt: skip
        self.advance = advance  # (simulated time a slow call takes)
        self.name = name
        self.rng = rng
        self.state = state
        self.mode = "up"

    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        if self.mode == "down":
            return [Result(Outcome.RETRY, error=ConnectionError("down")) for _ in batch]
        cut = len(batch)
        if self.mode == "partial" and batch:
            cut = self.rng.randrange(len(batch) + 1)
        elif self.mode == "slow" and batch:
            self.advance(0.2)
            cut = 1
        out: list[Result] = []
        for i, d in enumerate(batch):
            env = d.envelope
            if i >= cut:
                out.append(Result(Outcome.RETRY, error=ConnectionError("cut short")))
                continue
            key = env.dedup_key
            dest = f"{self.name}|{env.channel}"
            if self.mode == "rejecting" and zlib.crc32(key.encode()) % 4 == 0:
                self.state.dead.append((dest, key))  # (the dispatcher dead-letters it)
                out.append(Result(Outcome.REJECTED, error=ValueError("rejected")))
                continue
            mark = (dest, f"{env.rule_id}|{key}")
            if mark in self.state.marks:
                out.append(Result(Outcome.DUPLICATE))
                continue
            self.state.marks.add(mark)
            self.state.records.setdefault(dest, []).append(key)
            out.append(Result(Outcome.DELIVERED))
        return out

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def healthy(self) -> bool:
        return self.mode != "down"

    def close(self) -> None:
        pass


class SimCheckpoints:
    """Forward-only checkpoints (as the Redis script) that can be down."""

    def __init__(self, on_advance: Callable[[str, str, Position], None]) -> None:
        self.data: dict[tuple[str, str], Position] = {}
        self.watermarks: dict[str, int] = {}
        self.down = False
        self.on_advance = on_advance

    def load(self, route_id: str, channel: str) -> Position | None:
        if self.down:
            raise ConnectionError("checkpoint store down")
        return self.data.get((route_id, channel))

    def advance(self, route_id: str, channel: str, position: Position, fence: Any = None) -> bool:
        if self.down:
            raise ConnectionError("checkpoint store down")
        cur = self.data.get((route_id, channel))
        if cur is not None:
            if position.serial and cur.serial:
                if position.serial <= cur.serial:
                    return False
            elif position.timestamp < cur.timestamp or (
                position.timestamp == cur.timestamp and position.id == cur.id
            ):
                return False
        self.on_advance(route_id, channel, position)
        self.data[(route_id, channel)] = position
        return True

    def load_watermark(self, scope: str) -> int | None:
        if self.down:
            raise ConnectionError("checkpoint store down")
        return self.watermarks.get(scope)

    def raise_watermark(self, scope: str, ms: int) -> bool:
        if self.down:
            raise ConnectionError("checkpoint store down")
        if ms <= self.watermarks.get(scope, -1):
            return False
        self.watermarks[scope] = ms
        return True

    def advance_many(
        self, route_id: str, positions: Mapping[str, Position], fences: Any = None
    ) -> dict[str, bool]:
        if self.down:
            raise ConnectionError("checkpoint store down")
        return {ch: self.advance(route_id, ch, pos) for ch, pos in positions.items()}


class SimExecutor(Executor):
    """Holds submitted jobs; the scenario runs them one at a time, in any order."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.jobs.append((lambda: fn(*args, **kwargs), (), future))
        return future

    def run_one(self, rng: random.Random) -> bool:
        if not self.jobs:
            return False
        fn, _, future = self.jobs.pop(rng.randrange(len(self.jobs)))
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.jobs.clear()
