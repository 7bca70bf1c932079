"""Wiring: a :class:`~ably_bridge.bridge.config.BridgeConfig` into a running bridge.

This module owns :class:`BridgeApp`, which builds every part the daemon needs
from the configuration and nothing else: the Redis client for checkpoints,
dead letters and presence snapshots; the sinks (one per target kind and URL,
each wrapped in a :class:`~ably_bridge.bridge.metrics.MeteredSink`); the REST
client for backfill and discovery; the channel source (a pool of realtime
connections by default, or one given by a test); the shard view when
``sharding`` is configured (whose fencing tokens the checkpoint store, the
dispatcher and the Redis Streams sinks then check); the dispatcher, the
daemon, the metrics and the health endpoint. ``ably-bridge run`` is
``BridgeApp(config).run()``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ably_bridge.bridge.backfill import RestHistory
from ably_bridge.bridge.checkpoint import CheckpointStore
from ably_bridge.bridge.clients import rest_client
from ably_bridge.bridge.config import BridgeConfig, CeleryTarget, Route, Target
from ably_bridge.bridge.connection_watch import ConnectionWatch
from ably_bridge.bridge.daemon import Daemon, DaemonOptions
from ably_bridge.bridge.deadletter import DeadLetterWriter
from ably_bridge.bridge.discovery import RestDirectory
from ably_bridge.bridge.dispatch import Dispatcher
from ably_bridge.bridge.fencing import Fencing
from ably_bridge.bridge.health import HealthServer
from ably_bridge.bridge.metrics import BridgeMetrics, MeteredSink
from ably_bridge.bridge.presence_snapshot import PresenceSnapshot
from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sharding import LeaseShards, ShardView, build_shards
from ably_bridge.bridge.sinks.base import Sink, SinkOptions, create_sink
from ably_bridge.bridge.source import ChannelSource, HistorySource
from ably_bridge.bridge.status import BridgeStatus, StatusSources
from ably_bridge.bridge.status_history import RateHistory, RecentErrors
from ably_bridge.clock import Clock, SystemClock

if TYPE_CHECKING:
    pass

__all__ = ["BridgeApp", "SinkPool", "tune_gc"]

logger = logging.getLogger(__name__)


# Net new container objects between young collections (CPython's default: 700).
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Garbage collection for a process that is the daemon (``ably-bridge run``).

    Everything built at start-up (modules, configuration, Celery apps, clients)
    is moved out of the collector's sight (``gc.freeze``), and the young
    generation is collected after 50,000 net new objects instead of 700. Under
    a backlog - events queued faster than a sink takes them - the daemon holds
    hundreds of thousands of objects, and with the defaults the collector ran
    every few hundred events and walked them again and again: 22% of the
    daemon's CPU (bench/bridge_e2e.py, Redis Streams, 200,000 messages: 1.02 s
    of 4.7 s; after this 0.07 s, 23.4 -> 18.5 us per message). The events
    themselves are freed by reference counting; what waits for the collector
    is the rare cycle, so the memory this keeps is bounded and small.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class SinkPool:
    """One sink per (kind, URL), created on first use and metered."""

    def __init__(
        self,
        config: BridgeConfig,
        metrics: BridgeMetrics,
        clock: Clock,
        fencing: Fencing | None = None,
        target_cache_limit: int = 1024,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self.target_cache_limit = target_cache_limit  # targets remembered by identity
        self._clock = clock
        self._options = SinkOptions(
            key_prefix=config.key_prefix,
            dedup_ttl=config.delivery.dedup_ttl,
            clock=clock,
            fencing=fencing,
            wait_replicas=config.redis_wait_replicas,
            wait_timeout=config.redis_wait_timeout,
        )
        self.sinks: dict[tuple[str, str], MeteredSink] = {}
        # id(target) -> (target, its sink): the dispatcher asks once per event; the
        # target is kept so that its id is not reused while cached (bounded: reloads).
        self._by_target: dict[int, tuple[Target, MeteredSink]] = {}

    def __call__(self, target: Target) -> Sink:
        hit = self._by_target.get(id(target))
        if hit is not None and hit[0] is target:
            return hit[1]
        sink = self._make(target)
        if len(self._by_target) >= self.target_cache_limit:
            self._by_target.clear()
        self._by_target[id(target)] = (target, sink)
        return sink

    def _make(self, target: Target) -> MeteredSink:
        if isinstance(target, CeleryTarget):
            secret = target.broker_url or self._config.celery_broker_url
        else:
            secret = target.url or self._config.redis_url
        if secret is None:
            raise ValueError(f"no URL for a {target.kind} target")
        url = secret.reveal()
        key = (target.kind, url)
        sink = self.sinks.get(key)
        if sink is None:
            label = f"{target.kind}:{redact_url(url)}"
            sink = MeteredSink(
                create_sink(target.kind, url, self._options), label, self._metrics, self._clock
            )
            self.sinks[key] = sink
            logger.info("sink %s set up (it connects on the first delivery)", label,
                        extra={"sink": label})  # fmt: skip
        return sink

    def peek(self, target: Target) -> MeteredSink | None:
        """The sink ``target`` delivers to, if made already (never makes one)."""
        if isinstance(target, CeleryTarget):
            secret = target.broker_url or self._config.celery_broker_url
        else:
            secret = target.url or self._config.redis_url
        return None if secret is None else self.sinks.get((target.kind, secret.reveal()))

    def healthy(self) -> list[str]:
        """Labels of sinks whose probe fails."""
        return [s.label for s in self.sinks.values() if not s.healthy()]

    def close(self) -> None:
        for sink in self.sinks.values():
            try:
                sink.close()
            except Exception as exc:
                logger.warning("closing sink %s: %s", sink.label, exc)


class BridgeApp:
    """The whole bridge process, built from a configuration."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        source: ChannelSource | None = None,
        history: HistorySource | None = None,
        clock: Clock | None = None,
        options: DaemonOptions | None = None,
        reload_config: Callable[[], BridgeConfig] | None = None,
        executor: Executor | None = None,
        health: bool | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = BridgeMetrics()
        self.redis = open_redis(
            config.redis_url.reveal(),
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            retry=Retry(NoBackoff(), 1),
        )
        self.shards: ShardView | None = build_shards(
            config.sharding, self._lease_client(), config.key_prefix
        ) if config.sharding.enabled else None  # fmt: skip
        fencing = self.shards if isinstance(self.shards, LeaseShards) else None
        self.checkpoints = CheckpointStore(self.redis, prefix=config.key_prefix, fencing=fencing)
        self.dead_letters = DeadLetterWriter(
            self.redis,
            config.dead_letter.stream,
            maxlen=config.dead_letter.maxlen,
            clock=self.clock,
        )
        self.sinks = SinkPool(config, self.metrics, self.clock, fencing)
        self._snapshots: dict[str, PresenceSnapshot] = {}
        self.rest = rest_client(config)
        opts = options or DaemonOptions(drain_timeout=config.delivery.drain_timeout)
        self.dispatcher = Dispatcher(
            config,
            sink_for=self.sinks,
            dead_letters=self.dead_letters,
            checkpoints=self.checkpoints,
            snapshot_for=self._snapshot_for,
            clock=self.clock,
            fencing=fencing,
            checkpoint_interval=opts.checkpoint_interval,
        )
        self.connection_watch = ConnectionWatch()
        self.source = source if source is not None else self._realtime_source()
        self.daemon = Daemon(
            config,
            source=self.source,
            history=history
            or RestHistory(
                self.rest, operations_lookback_ms=int(config.delivery.operations_lookback * 1000)
            ),
            directory=RestDirectory(self.rest),
            dispatcher=self.dispatcher,
            checkpoints=self.checkpoints,
            executor=executor or ThreadPoolExecutor(8, thread_name_prefix="ably-bridge-io"),
            metrics=self.metrics,
            clock=self.clock,
            options=opts,
            reload_config=reload_config,
            shards=self.shards,
        )
        self.history = RateHistory(self.metrics, clock=self.clock)
        self.recent_errors = RecentErrors()
        self.status = BridgeStatus(self._status_sources())
        self.health: HealthServer | None = None
        if config.health.enabled if health is None else health:
            self.health = HealthServer(
                config.health.host,
                config.health.port,
                alive=self._alive,
                ready=self._ready,
                metrics=self.metrics.render,
                status=self.status,
                token=config.health.token,
            )

    def _status_sources(self) -> StatusSources:
        """What /status reads (issue 19): snapshots of the daemon, dispatcher, sinks and
        connections, each safe to take from a health-server thread."""
        source = self.source
        rows = getattr(source, "connections_status", None)

        def connections() -> list[tuple[int, str, int, float]]:
            if rows is not None:
                return rows()  # type: ignore[no-any-return]
            return [(0, source.connection_state(), len(self.daemon.tracks), 0.0)]

        shards = self.shards
        replica = getattr(shards, "replica", None)
        if replica is None and getattr(shards, "index", None) is not None:
            replica = f"{shards.index} of {shards.replicas}"  # type: ignore[union-attr]
        return StatusSources(
            config=lambda: self.daemon.config,
            daemon=self.daemon,
            dispatcher=self.dispatcher,
            sink_for=self.sinks.peek,
            ready=self._ready,
            connections=connections,
            connection_errors=self.connection_watch.last_errors,
            placement=getattr(source, "placement", None),
            shards=shards,
            replica=replica,
            history=self.history.samples,
            recent_errors=self.recent_errors.lines,
            monotonic=self.clock.monotonic,
            time_ms=self.clock.time_ms,
        )

    def _realtime_source(self) -> ChannelSource:
        # Hook (issue 17, item 7): every realtime connection is watched, so a FAILED one
        # (a wrong key: 40101) is logged once with its code and reported by the probes.
        from ably_bridge.bridge.connections import ConnectionPool, PoolOptions
        from ably_bridge.bridge.realtime_source import RealtimeSource

        def connect(number: int) -> ChannelSource:
            source = RealtimeSource.from_config(self.config, callback_workers=4)
            self.connection_watch.observe(number, source.client.connection)
            return source

        ably = self.config.ably
        options = PoolOptions(
            channels_per_connection=ably.channels_per_connection,
            max_connections=ably.max_connections,
            message_rate_budget=ably.message_rate_budget,
        )
        return ConnectionPool(connect, options)

    def _lease_client(self) -> redis.Redis:
        """A Redis client for lease rounds: its timeouts stay well inside the lease TTL."""
        timeout = min(5.0, self.config.sharding.lease_ttl / 3.0)
        return open_redis(
            self.config.redis_url.reveal(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )

    def _snapshot_for(self, route: Route) -> PresenceSnapshot | None:
        if route.presence_snapshot is None:
            return None
        snap = self._snapshots.get(route.id)
        if snap is None:
            snap = PresenceSnapshot(
                self.redis, key_template=route.presence_snapshot.key, app_id=self.config.app_id
            )
            self._snapshots[route.id] = snap
        return snap

    # -- probes (health thread) -----------------------------------------------------
    def _alive(self) -> tuple[bool, list[str]]:
        stalled = self.clock.monotonic() - self.daemon.heartbeat
        if not self.daemon.stopped and stalled > 30.0:
            return False, [f"delivery loop stalled for {stalled:.0f}s"]
        # A FAILED connection is not retried and the key is read at start: only a
        # restart can recover (docs/security.md, "Health and admin endpoints").
        failures = self.connection_watch.failures()
        return not failures, failures

    def _ready(self) -> tuple[bool, list[str]]:
        ok, problems = self.daemon.readiness()
        failures = self.connection_watch.failures()
        problems.extend(failures)
        ok = ok and not failures
        failing = self.sinks.healthy()
        if failing:
            problems.append(f"sink(s) unreachable: {', '.join(failing)}")
        return ok and not failing, problems

    # -- running ------------------------------------------------------------------------
    def run(self) -> None:
        """Serve health, run the daemon until stopped, then close everything."""
        self.recent_errors.install()
        self.history.start()
        if self.health is not None:
            self.health.start()
        if self.shards is not None:
            self.shards.start()
        try:
            self.daemon.run()
        finally:
            self.close()

    def close(self) -> None:
        self.daemon.shutdown()  # drains and saves checkpoints first ...
        if self.shards is not None:
            self.shards.close()  # ... then hands the leases over
        if self.health is not None:
            self.health.stop()
        self.history.stop()
        self.recent_errors.uninstall()
        self.sinks.close()
        self.rest.close()
        self.redis.close()
