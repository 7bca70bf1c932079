"""The status model: what ``GET /status`` answers, built from snapshots of the bridge.

This module owns :class:`BridgeStatus`, which builds the JSON document of
``/status`` (schema ``ably-bridge/status/1``, documented in
``docs/operating-console.md``) on a health-server thread:

* ``process`` - version, start time and uptime, site, app id, replica and the
  shards it owns, readiness with its reasons;
* ``totals`` - channels per phase, events held and buffered, checkpoint lag,
  the dispatcher's counters and dead letters by reason (since start);
* ``connections`` - each realtime connection: state, channels, inbound rate,
  the last error it gave (Ably code and message);
* ``routes`` - each route: channels per phase, buffered events, checkpoint lag,
  and its targets with the outcome counts and last error of their sink;
* ``attention`` - up to :data:`ATTENTION_MAX` channels that need a look first
  (failed, paused, backfilling, attaching, then live channels behind);
* ``channels`` - one page of channels (see :mod:`.status_query`): phase, held
  events, backfill progress, and per route the last delivered event and when,
  checkpoint lag and buffered events;
* ``history`` and ``recent_errors`` (:mod:`.status_history`).

It reads, never changes, the delivery thread's objects, through
:class:`StatusSources`: copies of dicts (atomic under the GIL) and plain
attributes, so a status request never waits for the delivery thread and a
stalled delivery thread still gets a status. What it reads of the daemon is
in :func:`channel_rows` and :func:`process_ready` only. Only the page of
channels asked for is built in full: with 10,000 channels a request walks the
names once (filter, then the first ``limit`` after the cursor in name order).
Nothing secret is in it: sink labels and errors are redacted, targets name
their queue, task or stream key, never a URL.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ably_bridge import __version__
from ably_bridge.bridge.config import BridgeConfig, CeleryTarget, Route, Target
from ably_bridge.bridge.router import Router
from ably_bridge.bridge.status_query import (
    ATTENTION,
    LAG_ATTENTION,
    StatusQuery,
    encode_cursor,
)
from ably_bridge.bridge.tracks import PHASES

__all__ = [
    "ATTENTION_MAX",
    "SCHEMA",
    "BridgeStatus",
    "ChannelRow",
    "StatusSources",
    "channel_rows",
]

SCHEMA = "ably-bridge/status/1"
ATTENTION_MAX = 20
MEMO_MAX = 200_000  # channels whose routes are remembered between requests
_RANK = {"failed": 0, "paused": 1, "backfilling": 2, "attaching": 3, "stopped": 5, "live": 6}


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel as the daemon holds it, copied (see :func:`channel_rows`)."""

    name: str
    phase: str
    source_state: str
    held_events: int  # accepted from Ably, not yet handed to the dispatcher
    backfill_queued: int  # of those, backfilled messages
    backfill_failures: int
    retry_in: float | None  # seconds until a re-attach or backfill retry


def channel_rows(daemon: Any, now: float) -> list[ChannelRow]:
    """Every channel of ``daemon``, copied field by field (``now``: its monotonic clock)."""
    rows = []
    for track in list(daemon.tracks.values()):
        queued = 0
        try:
            queued = sum(len(i.payload) for i in list(track.pending) if i.epoch < 0)
        except RuntimeError:  # changed while copied: left out of this answer
            queued = 0
        retry_at = track.retry_at
        rows.append(
            ChannelRow(
                track.name, track.phase, track.source_state, track.held_live + queued,
                queued, track.backfill_failures,
                None if retry_at is None else max(0.0, retry_at - now),
            )
        )  # fmt: skip
    return rows


def process_ready(daemon: Any) -> tuple[bool, list[str]]:
    return daemon.readiness()  # type: ignore[no-any-return]


@dataclass
class StatusSources:
    """What :class:`BridgeStatus` reads; every callable is safe from any thread."""

    config: Callable[[], BridgeConfig]
    daemon: Any  # the Daemon: read by channel_rows and process_ready only
    dispatcher: Any  # stats, backlog(), last_settled
    sink_for: Callable[[Target], Any]  # the MeteredSink of a target, or None
    ready: Callable[[], tuple[bool, list[str]]]
    connections: Callable[[], list[tuple[int, str, int, float]]]
    connection_errors: Callable[[], dict[int, tuple[int | None, str, int]]]
    placement: Callable[[], dict[str, int]] | None = None
    shards: Any = None  # a ShardView or None
    replica: str | None = None
    history: Callable[[], list[Any]] | None = None
    recent_errors: Callable[[], list[dict[str, Any]]] | None = None
    monotonic: Callable[[], float] = time.monotonic
    time_ms: Callable[[], int] = lambda: int(time.time() * 1000)


class BridgeStatus:
    """Builds the ``/status`` document (see the module docstring)."""

    def __init__(self, sources: StatusSources) -> None:
        self.sources = sources
        self.started_ms = sources.time_ms()
        self._started = sources.monotonic()
        self._lock = threading.Lock()  # the private router below: one request at a time
        self._router: Router | None = None
        self._routes: tuple[Route, ...] = ()
        self._memo: dict[str, list[str]] = {}

    def route_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.sources.config().routes)

    def _routes_of(self, config: BridgeConfig) -> Callable[[str], list[str]]:
        """Channel -> ids of the routes taking it, from a router of our own (its caches
        are not the delivery thread's), remembered until the routes change (reload)."""
        if self._router is None or self._routes is not config.routes:
            self._router, self._routes = Router(config.routes), config.routes
            self._memo = {}
        router, memo = self._router, self._memo
        if len(memo) > MEMO_MAX:
            memo.clear()

        def routes(channel: str) -> list[str]:
            found = memo.get(channel)
            if found is None:
                found = memo[channel] = [r.id for r in _routes_for(router, channel)]
            return found

        return routes

    def build(self, query: StatusQuery) -> dict[str, Any]:
        with self._lock:
            return self._build(query)

    def _build(self, query: StatusQuery) -> dict[str, Any]:
        src = self.sources
        config = src.config()
        now_ms = src.time_ms()
        rows = channel_rows(src.daemon, src.monotonic())
        backlog: dict[tuple[str, str], tuple[int, int]] = src.dispatcher.backlog()
        lag = _lags(backlog, now_ms)
        routes_of = self._routes_of(config)
        phases = dict.fromkeys(PHASES, 0)
        for row in rows:
            phases[row.phase] = phases.get(row.phase, 0) + 1
        return {
            "schema": SCHEMA,
            "generated_at": now_ms,
            "process": self._process(config, now_ms),
            "totals": self._totals(rows, phases, backlog, lag),
            "connections": self._connections(),
            "routes": self._route_list(config, rows, routes_of, backlog, lag),
            "attention": [
                self._channel(r, routes_of, backlog, lag, now_ms)
                for r in _attention(rows, lag)[:ATTENTION_MAX]
            ],
            "channels": self._page(query, rows, routes_of, backlog, lag, now_ms),
            "history": [_sample(s) for s in (src.history() if src.history else [])],
            "recent_errors": list(reversed(src.recent_errors())) if src.recent_errors else [],
        }

    # -- sections ---------------------------------------------------------------------
    def _process(self, config: BridgeConfig, now_ms: int) -> dict[str, Any]:
        src = self.sources
        ready, problems = src.ready()
        shards = src.shards
        owned = sorted(shards.tokens()) if shards is not None else None
        return {
            "version": __version__,
            "started_at": self.started_ms,
            "uptime_seconds": round(max(0.0, src.monotonic() - self._started), 3),
            "site": config.site,
            "app_id": config.app_id,
            "replica": src.replica,
            "sharding": {
                "mode": config.sharding.mode,
                "shards": getattr(shards, "shards", None),
                "owned": owned,
            },
            "ready": ready,
            "problems": problems,
        }

    def _totals(
        self,
        rows: list[ChannelRow],
        phases: dict[str, int],
        backlog: dict[tuple[str, str], tuple[int, int]],
        lag: dict[tuple[str, str], float],
    ) -> dict[str, Any]:
        stats = self.sources.dispatcher.stats
        return {
            "channels": len(rows),
            "phases": phases,
            "held_events": sum(r.held_events for r in rows),
            "buffered_events": sum(n for n, _ in backlog.values()),
            "checkpoint_lag_seconds": round(max(lag.values(), default=0.0), 3),
            "accepted": stats.accepted,
            "delivered": stats.delivered,
            "duplicates": stats.duplicates + stats.skipped,
            "retries": stats.retries,
            "refused": stats.refused,
            "dead_lettered": stats.dead_lettered,
            "dead_letters_by_reason": dict(stats.by_reason),
        }

    def _connections(self) -> list[dict[str, Any]]:
        errors = self.sources.connection_errors()
        out = []
        for number, state, channels, rate in self.sources.connections():
            err = errors.get(number)
            out.append(
                {
                    "number": number,
                    "state": state,
                    "channels": channels,
                    "inbound_rate": round(rate, 3),
                    "last_error": None
                    if err is None
                    else {"code": err[0], "message": err[1], "at": err[2]},
                }
            )
        return out

    def _route_list(
        self,
        config: BridgeConfig,
        rows: list[ChannelRow],
        routes_of: Callable[[str], list[str]],
        backlog: dict[tuple[str, str], tuple[int, int]],
        lag: dict[tuple[str, str], float],
    ) -> list[dict[str, Any]]:
        per_route: dict[str, dict[str, int]] = {
            r.id: dict.fromkeys(PHASES, 0) for r in config.routes
        }
        counts = dict.fromkeys(per_route, 0)
        for row in rows:
            for rid in routes_of(row.name):
                per_route[rid][row.phase] = per_route[rid].get(row.phase, 0) + 1
                counts[rid] += 1
        out = []
        for route in config.routes:
            buffered = sum(n for (rid, _), (n, _) in backlog.items() if rid == route.id)
            worst = max((v for (rid, _), v in lag.items() if rid == route.id), default=0.0)
            out.append(
                {
                    "id": route.id,
                    "sources": sorted(route.sources),
                    "channels": counts[route.id],
                    "phases": per_route[route.id],
                    "buffered_events": buffered,
                    "checkpoint_lag_seconds": round(worst, 3),
                    "targets": [self._target(t) for t in route.targets],
                }
            )
        return out

    def _target(self, target: Target) -> dict[str, Any]:
        sink = self.sources.sink_for(target)
        err = getattr(sink, "last_error", None)
        if isinstance(target, CeleryTarget):
            destination = {"task": target.task, "queue": target.queue}
        else:
            destination = {"stream": target.key}
        return {
            "kind": target.kind,
            "destination": destination,
            "sink": getattr(sink, "label", None),
            "outcomes": dict(getattr(sink, "outcomes", {}) or {}),
            "last_error": None
            if err is None
            else {"message": err[0], "code": err[1], "at": err[2]},
        }

    def _page(
        self,
        query: StatusQuery,
        rows: list[ChannelRow],
        routes_of: Callable[[str], list[str]],
        backlog: dict[tuple[str, str], tuple[int, int]],
        lag: dict[tuple[str, str], float],
        now_ms: int,
    ) -> dict[str, Any]:
        chosen: Iterable[ChannelRow] = rows
        if query.state == ATTENTION:
            needy = {r.name for r in _attention(rows, lag)}
            chosen = [r for r in chosen if r.name in needy]
        elif query.state is not None:
            chosen = [r for r in chosen if r.phase == query.state]
        if query.route is not None:
            chosen = [r for r in chosen if query.route in routes_of(r.name)]
        matching = list(chosen)
        after = query.after
        candidates = matching if after is None else [r for r in matching if r.name > after]
        page = heapq.nsmallest(query.limit + 1, candidates, key=lambda r: r.name)
        more = len(page) > query.limit
        page = page[: query.limit]
        return {
            "total": len(matching),
            "filter": {"route": query.route, "state": query.state, "limit": query.limit},
            "items": [self._channel(r, routes_of, backlog, lag, now_ms) for r in page],
            "next_cursor": encode_cursor(page[-1].name) if more and page else None,
        }

    def _channel(
        self,
        row: ChannelRow,
        routes_of: Callable[[str], list[str]],
        backlog: dict[tuple[str, str], tuple[int, int]],
        lag: dict[tuple[str, str], float],
        now_ms: int,
    ) -> dict[str, Any]:
        settled = self.sources.dispatcher.last_settled
        placement = self.sources.placement() if self.sources.placement else {}
        routes = []
        for rid in routes_of(row.name):
            key = (rid, row.name)
            last = settled.get(key)
            routes.append(
                {
                    "id": rid,
                    "last_delivered": None
                    if last is None
                    else {
                        "id": last[0].id,
                        "timestamp": last[0].timestamp,
                        "settled_at": last[1],
                    },
                    "checkpoint_lag_seconds": round(lag.get(key, 0.0), 3),
                    "buffered_events": backlog.get(key, (0, 0))[0],
                }
            )
        backfill = None
        if row.phase == "backfilling" or row.backfill_queued or row.backfill_failures:
            backfill = {
                "running": row.phase == "backfilling",
                "queued": row.backfill_queued,
                "failures": row.backfill_failures,
                "retry_in_seconds": None if row.retry_in is None else round(row.retry_in, 3),
            }
        return {
            "name": row.name,
            "phase": row.phase,
            "source_state": row.source_state,
            "connection": placement.get(row.name),
            "held_events": row.held_events,
            "backfill": backfill,
            "routes": routes,
        }


def _routes_for(router: Router, channel: str) -> list[Route]:
    out: list[Route] = []
    for source in ("message", "presence", "lifecycle"):
        for route in router.routes_for(channel, source):
            if not any(r is route for r in out):
                out.append(route)
    return out


def _lags(
    backlog: dict[tuple[str, str], tuple[int, int]], now_ms: int
) -> dict[tuple[str, str], float]:
    return {
        key: max(0.0, (now_ms - oldest) / 1000.0) if oldest > 0 else 0.0
        for key, (_, oldest) in backlog.items()
    }


def _attention(rows: list[ChannelRow], lag: dict[tuple[str, str], float]) -> list[ChannelRow]:
    """The channels that need a look, the most urgent first (then by name)."""
    behind: dict[str, float] = {}
    for (_, channel), seconds in lag.items():
        if seconds >= LAG_ATTENTION:
            behind[channel] = max(seconds, behind.get(channel, 0.0))
    needy = [r for r in rows if r.phase != "live" or r.name in behind]
    return sorted(
        needy,
        key=lambda r: (
            _RANK.get(r.phase, 4) if r.phase != "live" else 4,
            -behind.get(r.name, 0.0),
            r.name,
        ),
    )


def _sample(sample: Any) -> dict[str, Any]:
    return {
        "at": sample.at,
        "received_per_s": round(sample.received_per_s, 3),
        "delivered_per_s": round(sample.delivered_per_s, 3),
        "latency_p50": sample.latency_p50,
        "latency_p95": sample.latency_p95,
    }
