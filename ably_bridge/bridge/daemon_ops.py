"""The daemon's operations: discovery, shards, reload and status.

This module owns the :class:`OpsMixin` part of :class:`~.daemon.Daemon`:
discovery results (channels a route wants are attached), following the shard
view (drop lost or moved shards, attach gained ones, report handed-over ones),
reloading the routes, and what health and metrics read (phase counts,
readiness, gauges).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future

from ably_bridge.bridge.config import BridgeConfig
from ably_bridge.bridge.core.shards import shard_of
from ably_bridge.bridge.daemon_state import DaemonState
from ably_bridge.bridge.discovery import DiscoverySchedule, discovery_prefixes
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.tracks import (
    GAUGE_INTERVAL,
    MANY_CHANNELS,
    PHASES,
    Discovered,
)

__all__ = ["OpsMixin"]

logger = logging.getLogger("ably_bridge.bridge.daemon")


class OpsMixin(DaemonState):
    """Part of :class:`~.daemon.Daemon` (see the module docstring)."""

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

    def _refresh_gauges(self) -> None:
        """:meth:`_update_gauges` after every step, or with MANY_CHANNELS or more at
        most every GAUGE_INTERVAL (they walk every channel)."""
        if len(self.tracks) >= MANY_CHANNELS:
            now = self.clock.monotonic()
            if now - self._gauges_at < GAUGE_INTERVAL:
                return
            self._gauges_at = now
        self._update_gauges()
