"""One seeded run of the bridge through overlapping faults, then the checker.

:func:`run_seed` builds the real daemon and dispatcher (routing, envelopes,
in-memory de-duplication, the delivery ledger, checkpoints, start points,
backfill planning: the code that runs in production) over the simulated world
of :mod:`.world`, and for a few hundred steps of simulated time does one
random thing per step: publish messages or presence events (on configured
channels and on new channels that discovery finds), take a sink down or make it
reject or half-acknowledge batches, take the checkpoint store down, drop a
channel's connection and bring it back resumed or not, suspend a channel, run
background jobs in any order, or crash the bridge (a new daemon starts from
what was persisted only: checkpoints and the sinks' writes and marks). Then
every fault heals, the bridge runs until idle, and :mod:`.checker` judges.

Everything comes from the seed: the same seed replays the same run.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.bridge.config import BridgeConfig, Target, parse_config
from ably_bridge.bridge.core.start_points import StartPoint
from ably_bridge.bridge.daemon import Daemon, DaemonOptions
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.clock import FakeClock
from tests.bridge.sim.checker import Checker, Published
from tests.bridge.sim.world import SimAbly, SimCheckpoints, SimExecutor, SimSink, SinkState

SKEW_MS = 5000
STATIC = ["s:1", "s:2"]
SINKS = ["a", "b", "c"]
ROUTE_TARGETS = {"st": ["a", "b"], "disc": ["c"]}
CLIENTS = ["ann", "bo", "cy"]
ENTER, LEAVE, UPDATE = 2, 3, 4


def _config(buffer_size: int, batch_size: int) -> BridgeConfig:
    raw: dict[str, Any] = {
        "redis": {"url": "memory://"},
        "health": {"port": 0},
        "delivery": {
            "buffer_size": buffer_size,
            "batch_size": batch_size,
            "retry": {"initial": 0.2, "max_delay": 2.0, "jitter": 0},
        },
        "routes": [
            {
                "id": "st",
                "channels": STATIC,
                "sources": ["message", "presence"],
                "targets": [
                    {"type": "redis_stream", "key": "a:{channel}"},
                    {"type": "redis_stream", "key": "b:{channel}"},
                ],
            },
            {
                "id": "disc",
                "channels": ["d:*"],
                "discover": {"prefixes": ["d:"], "interval": 5},
                "sources": ["message", "presence"],
                "targets": [{"type": "redis_stream", "key": "c:{channel}"}],
            },
        ],
    }
    return parse_config(raw, {"ABLY_KEY": "app.key:secret"})


class _Letters:
    def write_many(self, letters: list[Any]) -> int:
        return len(letters)


@dataclass
class Outcome:
    seed: int
    violations: list[str]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


class Sim:
    """The world and the running bridge of one seed."""

    def __init__(self, seed: int, steps: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        self.clock = FakeClock()
        self.ably = SimAbly(self.clock.time_ms, retention_ms=24 * 3600 * 1000)
        self.states = {name: SinkState() for name in SINKS}
        self.sinks = {
            name: SimSink(name, random.Random(seed * 31 + i), self.states[name], self.clock.advance)
            for i, name in enumerate(SINKS)
        }
        self.config = _config(self.rng.choice([6, 12, 40]), self.rng.choice([1, 3, 10]))
        self.checkpoint_interval = self.rng.choice([0.0, 0.0, 0.05, 1.0])
        self.checker = Checker(
            targets=ROUTE_TARGETS,
            routes_of=lambda ch: ["disc"] if ch.startswith("d:") else ["st"],
            start_of=lambda ch: self.first_seen.get(ch),
            skew_ms=SKEW_MS,
        )
        self.checker.confirmed = self._confirmed
        self.checkpoints = SimCheckpoints(self.checker.on_advance)
        self.discovered: list[str] = []
        self.first_seen: dict[str, StartPoint] = {}
        self.stats = {"crashes": 0, "published": 0, "presence": 0, "faults": 0}
        self.daemon = self._start()

    def _confirmed(self, sink: str, channel: str, key: str) -> bool:
        state = self.states[sink]
        dest = f"{sink}|{channel}"
        return key in state.records.get(dest, ()) or (dest, key) in state.dead

    def _sink_for(self, target: Target) -> SimSink:
        key = getattr(target, "key", "")
        return self.sinks[key.split(":", 1)[0]]

    def _start(self) -> Daemon:
        self.executor = SimExecutor()
        dispatcher = Dispatcher(
            self.config,
            sink_for=self._sink_for,  # type: ignore[arg-type]
            dead_letters=_Letters(),  # type: ignore[arg-type]
            checkpoints=self.checkpoints,  # type: ignore[arg-type]
            clock=self.clock,
            rng=random.Random(self.seed),
            checkpoint_interval=self.checkpoint_interval,
        )
        daemon = Daemon(
            self.config,
            source=self.ably,
            history=self.ably,
            directory=self.ably,
            dispatcher=dispatcher,
            checkpoints=self.checkpoints,  # type: ignore[arg-type]
            executor=self.executor,
            metrics=BridgeMetrics(),
            clock=self.clock,
            options=DaemonOptions(seed_skew_ms=SKEW_MS, reattach_delay=1.0, attach_watchdog=10.0),
        )
        # What the bridge decided first for each channel, in any run: the checker
        # holds it to that (a start point recomputed later, or lost in a crash
        # while the store was down, would pass unnoticed otherwise).
        see = daemon.starts.see

        def first_see(channel: str, now_ms: int, lookback_s: float = 0.0) -> StartPoint:
            point = see(channel, now_ms, lookback_s)
            if channel not in self.first_seen:
                self.first_seen[channel] = StartPoint(point.position, point.discovered)
            return point

        daemon.starts.see = first_see  # type: ignore[method-assign]
        daemon.start()
        return daemon

    # -- actions -----------------------------------------------------------------
    def _channel(self) -> str:
        if self.discovered and self.rng.random() < 0.5:
            return self.rng.choice(self.discovered)
        if self.rng.random() < 0.1 and len(self.discovered) < 4:
            name = f"d:{len(self.discovered) + 1}"
            self.discovered.append(name)
            return name
        return self.rng.choice(STATIC)

    def publish(self) -> None:
        channel = self._channel()
        for _ in range(self.rng.choice([1, 1, 2, 5])):
            self.clock.advance(0.001)
            msg = self.ably.publish_live(channel)
            self.checker.publish(
                channel, "messages", Published(f"m:{msg.id}", msg.timestamp or 0, msg.serial)
            )
            self.stats["published"] += 1

    def presence(self) -> None:
        channel = self._channel()
        self.clock.advance(0.001)
        who = self.rng.choice(CLIENTS)
        action = self.rng.choice([ENTER, UPDATE, LEAVE])
        event = self.ably.presence_live(channel, action, who)
        self.checker.publish(
            channel, "presence", Published(f"p:{event.id}", event.timestamp or 0, None)
        )
        self.stats["presence"] += 1

    def sink_fault(self) -> None:
        sink = self.sinks[self.rng.choice(SINKS)]
        sink.mode = self.rng.choice(["up", "up", "down", "slow", "partial", "rejecting"])
        self.stats["faults"] += 1

    def store_fault(self) -> None:
        self.checkpoints.down = self.rng.random() < 0.5
        self.stats["faults"] += 1

    def connection_fault(self) -> None:
        channels = [*STATIC, *self.discovered]
        channel = self.rng.choice(channels)
        roll = self.rng.random()
        if channel in self.ably.missed:
            self.ably.restore(channel, resumed=roll < 0.5)
        elif roll < 0.05:
            self.ably.refuse_attach = not self.ably.refuse_attach  # attach requests fail
        elif roll < 0.12:
            if self.ably.channel(channel).handlers is not None:
                self.ably.fail(channel)  # FAILED: the bridge re-attaches after a delay
        elif roll < 0.6:
            self.ably.cut(channel)
        elif roll < 0.8:
            if self.ably.channel(channel).state == "attached":
                self.ably.suspend(channel)
        else:
            ch = self.ably.channel(channel)
            if ch.handlers is not None and ch.state in ("suspended", "attached"):
                self.ably.complete_attach(channel)  # re-attached without continuity
        self.stats["faults"] += 1

    def crash(self) -> None:
        if not self.checkpoints.watermarks:
            # Nothing about the bridge's start points was ever persisted: the next
            # run is a first run again (what this one saw first is not held to).
            self.first_seen = {
                ch: p for ch, p in self.first_seen.items()
                if any(c == ch for (_, c) in self.checkpoints.data)
            }  # fmt: skip
        self.ably.crash()
        self.stats["crashes"] += 1
        self.daemon = self._start()

    def step(self) -> None:
        self.clock.advance(self.rng.choice([0.001, 0.01, 0.1, 0.5, 1.0, 3.0]))
        roll = self.rng.random()
        if roll < 0.35:
            self.publish()
        elif roll < 0.5:
            self.presence()
        elif roll < 0.6:
            self.sink_fault()
        elif roll < 0.66:
            self.store_fault()
        elif roll < 0.78:
            self.connection_fault()
        elif roll < 0.8:
            self.crash()
        for _ in range(self.rng.choice([0, 1, 1, 2])):
            self.executor.run_one(self.rng)
        self.daemon.step()
        if self.rng.random() < 0.3:
            self.daemon.step()

    def heal(self) -> None:
        for sink in self.sinks.values():
            if sink.mode != "rejecting":
                sink.mode = "up"
        self.checkpoints.down = False
        self.ably.refuse_attach = False
        for channel in list(self.ably.missed):
            self.ably.restore(channel, resumed=False)
        for channel in [*STATIC, *self.discovered]:
            ch = self.ably.channel(channel)
            if ch.state == "suspended" and ch.handlers is not None:
                self.ably.complete_attach(channel)
        for _ in range(400):
            self.clock.advance(1.0)
            while self.executor.run_one(self.rng):
                pass
            self.daemon.step()
            self.daemon.run_until_idle(50)
            if self._idle():
                break
        for sink in self.sinks.values():
            sink.mode = "up"

    def _idle(self) -> bool:
        d = self.daemon
        wanted = set(STATIC) | set(self.discovered)
        return (
            set(d.tracks) >= wanted
            and all(t.phase == "live" and not t.pending for t in d.tracks.values())
            and d.dispatcher.pending() == 0
            and not d.dispatcher.unsettled_channels()
        )

    def run(self) -> Outcome:
        for _ in range(self.steps):
            self.step()
        self.heal()
        if not self._idle():
            d = self.daemon
            phases = {n: (t.phase, len(t.pending)) for n, t in d.tracks.items()}
            self.checker.violations.append(
                f"never went idle: {phases}, jobs {len(self.executor.jobs)}, "
                f"buffered {d.dispatcher.pending()}, unsettled {d.dispatcher.unsettled_channels()}"
            )
        self.checker.final(
            lambda sink, ch: self.states[sink].records.get(f"{sink}|{ch}", []),
            lambda sink: {k for (_, k) in self.states[sink].dead},
        )
        self.stats["advances"] = self.checker.advances
        return Outcome(self.seed, self.checker.violations, self.stats)


def run_seed(seed: int, steps: int = 120) -> Outcome:
    """One seed's run (the bridge's own logging is muted: thousands of warnings a run)."""
    logger = logging.getLogger("ably_bridge")
    level, logger.level = logger.level, logging.CRITICAL
    try:
        return Sim(seed, steps).run()
    finally:
        logger.setLevel(level)
