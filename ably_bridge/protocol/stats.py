"""App statistics and channel status: ``Stats`` (TS12) and ``ChannelDetails`` (CHD, CHS, CHO).

This module owns the Python shape of two REST resources: ``GET /stats`` items,
in both the flat v3+ ``entries`` form and the legacy nested form that
``X-Ably-Version: 2`` (and the sandbox's ``POST /stats``) use, and
``GET /channels/{name}`` channel details (ably-protocol.md 7.6, 8). The typed
views (``stats.inbound``, ``status.occupancy``...) live in :mod:`.stats_types`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ably_bridge.errors import EncodingError, ErrorCode
from ably_bridge.protocol.fields import opt_str
from ably_bridge.protocol.stats_types import (
    ChannelMetrics,
    ChannelOccupancy,
    PushStats,
    StatsConnectionTypes,
    StatsMessageTraffic,
    StatsMessageTypes,
    StatsRates,
    StatsRequestCount,
    StatsResourceCount,
    StatsView,
    StatsXchgMessages,
)

__all__ = [
    "ChannelDetails",
    "ChannelStatus",
    "Stats",
    "interval_time_from_id",
    "unit_from_interval_id",
]

Number = int | float

# Top-level keys of a stats item that are not statistics.
_STATS_META_KEYS = frozenset(
    {"intervalId", "unit", "schema", "appId", "inProgress", "entries", "intervalGranularity"}
)


def _not_a_map(what: str, raw: object) -> EncodingError:
    return EncodingError(
        f"{what} must be an object/map, not {type(raw).__name__}",
        ErrorCode.INVALID_DATA_OR_ENCODING,
        400,
    )


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _split_interval_id(interval_id: str) -> list[int] | None:
    """[year, month, (day, (hour, (minute)))] of an interval id, or None if malformed."""
    date_part, _, time_part = interval_id.partition(":")
    pieces = date_part.split("-")
    if time_part:
        if len(pieces) != 3:
            return None
        pieces += time_part.split(":")
    if not 2 <= len(pieces) <= 5 or not all(p.isdigit() and p.isascii() for p in pieces):
        return None
    return [int(p) for p in pieces]


def interval_time_from_id(interval_id: str | None) -> datetime | None:
    """UTC start of an interval id (TS12p): ``yyyy-mm-dd:hh:mm``, ``yyyy-mm-dd:hh``,
    ``yyyy-mm-dd`` or ``yyyy-mm``; ``None`` if absent or malformed."""
    if not interval_id:
        return None
    parts = _split_interval_id(interval_id)
    if parts is None:
        return None
    year, month, *rest = parts
    day, hour, minute = (rest + [1, 0, 0][len(rest) :])[:3]
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:
        return None


_UNIT_BY_PARTS = {5: "minute", 4: "hour", 3: "day", 2: "month"}


def unit_from_interval_id(interval_id: str | None) -> str | None:
    """The granularity an interval id's format implies (used only when ``unit`` is absent)."""
    parts = _split_interval_id(interval_id) if interval_id else None
    return None if parts is None else _UNIT_BY_PARTS[len(parts)]


def _flatten(prefix: str, value: Any, out: dict[str, Number]) -> None:
    """Legacy nested stats -> dotted keys; non-numeric leaves are skipped."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
    elif _is_number(value):
        out.setdefault(prefix, value)


@dataclass(slots=True, kw_only=True)
class Stats:
    """One stats interval (TS12). ``entries`` maps dotted metric names to numbers.

    ``interval_time`` is derived from ``interval_id`` (TS12p). The typed
    properties (``all``, ``inbound``, ``outbound``, ``persisted``,
    ``connections``, ``channels``, ``api_requests``, ``token_requests``,
    ``push``, ``xchg_producer``, ``xchg_consumer``, ``peak_rates``, ``count``)
    read ``entries`` in either wire form (:mod:`.stats_types`); ``raw`` is the
    item as received.
    """

    interval_id: str | None = None
    unit: str | None = None
    schema: str | None = None
    app_id: str | None = None
    in_progress: str | None = None  # yyyy-mm-dd:hh:mm[:ss]
    entries: dict[str, Number] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    interval_time: datetime | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.interval_time = interval_time_from_id(self.interval_id)

    # -- typed views (TS12e-TS12o, as the Go SDK's Stats) --------------------------------
    @property
    def all(self) -> StatsMessageTypes:
        """All messages (TS12e): ``messages.all.*`` or legacy ``all.*``."""
        return StatsView(self.entries).message_types(("messages.all", "all"))

    @property
    def inbound(self) -> StatsMessageTraffic:
        """Inbound messages by transport (TS12f)."""
        return StatsView(self.entries).message_traffic(("messages.inbound", "inbound"))

    @property
    def outbound(self) -> StatsMessageTraffic:
        """Outbound messages by transport (TS12g)."""
        return StatsView(self.entries).message_traffic(("messages.outbound", "outbound"))

    @property
    def persisted(self) -> StatsMessageTypes:
        """Persisted messages (TS12h)."""
        return StatsView(self.entries).message_types(("messages.persisted", "persisted"))

    @property
    def connections(self) -> StatsConnectionTypes:
        """Connections: all, plain, TLS (TS12i)."""
        view = StatsView(self.entries)
        return StatsConnectionTypes(
            all=view.resource_count(("connections.all",)),
            plain=view.resource_count(("connections.plain",)),
            tls=view.resource_count(("connections.tls",)),
        )

    @property
    def channels(self) -> StatsResourceCount:
        """Channels (TS12j)."""
        return StatsView(self.entries).resource_count(("channels",))

    @property
    def api_requests(self) -> StatsRequestCount:
        """API requests (TS12k): ``apiRequests.all.*`` or legacy ``apiRequests.*``."""
        return StatsView(self.entries).request_count(("apiRequests.all", "apiRequests"))

    @property
    def token_requests(self) -> StatsRequestCount:
        """Token requests (TS12l): ``apiRequests.tokenRequests.*`` or legacy ``tokenRequests.*``."""
        view = StatsView(self.entries)
        return view.request_count(("apiRequests.tokenRequests", "tokenRequests"))

    @property
    def push(self) -> PushStats:
        """Push notifications (TS12m)."""
        return StatsView(self.entries).push()

    @property
    def xchg_producer(self) -> StatsXchgMessages:
        """API Streamer, as producer (TS12n; legacy form only)."""
        return StatsView(self.entries).xchg("xchgProducer")

    @property
    def xchg_consumer(self) -> StatsXchgMessages:
        """API Streamer, as consumer (TS12o; legacy form only)."""
        return StatsView(self.entries).xchg("xchgConsumer")

    @property
    def peak_rates(self) -> StatsRates:
        """Peak rates (legacy form only)."""
        return StatsView(self.entries).rates()

    @property
    def count(self) -> Number:
        """The item's ``count``, when the server sends one (Go's ``Stats.Count``)."""
        return StatsView(self.entries).num("count")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Stats:
        """Parse a stats item in the v3 ``entries`` form or the legacy nested form.

        Legacy nested objects are flattened into dotted keys, kept as they are
        (``inbound.realtime.messages.count``); when both forms are present the
        ``entries`` values win.
        """
        if not isinstance(raw, Mapping):
            raise _not_a_map("a stats item", raw)
        entries: dict[str, Number] = {}
        flat = raw.get("entries")
        if isinstance(flat, Mapping):
            for key, value in flat.items():
                if type(key) is str and _is_number(value):
                    entries[key] = value
        for key, value in raw.items():
            if key not in _STATS_META_KEYS and type(key) is str:
                _flatten(key, value, entries)
        interval_id = opt_str(raw.get("intervalId"))
        return cls(
            interval_id=interval_id,
            unit=opt_str(raw.get("unit")) or unit_from_interval_id(interval_id),
            schema=opt_str(raw.get("schema")),
            app_id=opt_str(raw.get("appId")),
            in_progress=opt_str(raw.get("inProgress")),
            entries=entries,
            raw=dict(raw),
        )

    def to_dict(self) -> dict[str, Any]:
        """The v3 wire form (``entries`` flat), ``None`` fields omitted."""
        out: dict[str, Any] = {}
        if self.interval_id is not None:
            out["intervalId"] = self.interval_id
        if self.unit is not None:
            out["unit"] = self.unit
        if self.schema is not None:
            out["schema"] = self.schema
        if self.app_id is not None:
            out["appId"] = self.app_id
        if self.in_progress is not None:
            out["inProgress"] = self.in_progress
        out["entries"] = dict(self.entries)
        return out


@dataclass(slots=True, kw_only=True)
class ChannelStatus:
    """A channel's status (CHS2): ``is_active`` and the occupancy metrics (CHO2a, CHM2).

    ``occupancy.metrics`` is typed (:class:`~.stats_types.ChannelMetrics`, as
    in the Go SDK); ``metrics`` keeps the wire names (``connections``,
    ``presenceMembers``, ...) so metrics a newer server adds are not lost.
    """

    is_active: bool = False
    metrics: dict[str, int] = field(default_factory=dict)

    @property
    def occupancy(self) -> ChannelOccupancy:
        """CHS2b: the typed occupancy."""
        return ChannelOccupancy(ChannelMetrics.from_metrics(self.metrics))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ChannelStatus:
        if not isinstance(raw, Mapping):
            raise _not_a_map("channel status", raw)
        occupancy = raw.get("occupancy")
        metrics_raw = occupancy.get("metrics") if isinstance(occupancy, Mapping) else None
        metrics: dict[str, int] = {}
        if isinstance(metrics_raw, Mapping):
            for key, value in metrics_raw.items():
                if type(key) is str and type(value) is int:
                    metrics[key] = value
                elif type(key) is str and type(value) is float and value.is_integer():
                    metrics[key] = int(value)
        return cls(is_active=raw.get("isActive") is True, metrics=metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"isActive": self.is_active, "occupancy": {"metrics": dict(self.metrics)}}


@dataclass(slots=True, kw_only=True)
class ChannelDetails:
    """``GET /channels/{name}`` (CHD2): the channel id and its status."""

    channel_id: str
    status: ChannelStatus = field(default_factory=ChannelStatus)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ChannelDetails:
        if not isinstance(raw, Mapping):
            raise _not_a_map("channel details", raw)
        status = raw.get("status")
        parsed = ChannelStatus.from_dict(status) if isinstance(status, Mapping) else ChannelStatus()
        return cls(channel_id=opt_str(raw.get("channelId")) or "", status=parsed)

    def to_dict(self) -> dict[str, Any]:
        return {"channelId": self.channel_id, "status": self.status.to_dict()}
