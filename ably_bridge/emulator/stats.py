"""Application stats: per-minute counters, aggregation, and both wire shapes (section 8).

Counters live in ``App.stats`` as ``{"yyyy-mm-dd:hh:mm": {"dotted.entry": n}}``.
:func:`query` aggregates them by unit (minute/hour/day/month) and renders the
v3+ ``entries`` form (with the ``all`` totals derived and ``inProgress`` on an
interval that has not ended, TS12) or, for older protocol versions, the legacy nested form;
:func:`inject` accepts the sandbox's nested fixtures (``POST /stats``).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from typing import Any

from ably_bridge.emulator.apps import App
from ably_bridge.emulator.channels import Page
from ably_bridge.emulator.errors import error

SCHEMA = "https://schemas.ably.com/json/app-stats-0.0.5.json"
_UNIT_LEN = {"minute": 16, "hour": 13, "day": 10, "month": 7}
_FORMATS = {16: "%Y-%m-%d:%H:%M", 13: "%Y-%m-%d:%H", 10: "%Y-%m-%d", 7: "%Y-%m"}
_MESSAGE_ROOTS = ("all", "inbound", "outbound", "persisted", "processed")


def interval_ms(interval_id: str) -> int:
    """Start of an interval id (any unit's form) in ms since the epoch (TS12p)."""
    fmt = _FORMATS.get(len(interval_id))
    if fmt is None:
        raise error(40003, f"invalid interval {interval_id[:20]!r}")
    try:
        return calendar.timegm(time.strptime(interval_id, fmt)) * 1000
    except ValueError as exc:
        raise error(40003, f"invalid interval {interval_id[:20]!r}") from exc


def _bound(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    return interval_ms(value)


def _interval_end(interval_id: str) -> int:
    """The last millisecond of the interval ``interval_id`` names (an ``end`` bound)."""
    start = interval_ms(interval_id)
    if len(interval_id) == 7:
        year, month = int(interval_id[:4]), int(interval_id[5:7])
        return interval_ms(f"{year + month // 12:04d}-{month % 12 + 1:02d}") - 1
    span = {16: 60_000, 13: 3_600_000, 10: 86_400_000}[len(interval_id)]
    return start + span - 1


def _nested(entries: Mapping[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in entries.items():
        parts = dotted.split(".")
        if parts[0] == "messages" and len(parts) > 1 and parts[1] in _MESSAGE_ROOTS:
            parts = parts[1:]
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return out


def _rollup(entries: Mapping[str, int]) -> dict[str, int]:
    """``entries`` plus the ``all`` totals Ably derives from them; explicit values win.

    ``messages.<inbound|outbound>.<transport>.<type>.<metric>`` adds into the
    same path with ``all`` as transport, as type and as both, and into
    ``messages.all.<type>.<metric>`` and ``messages.all.all.<metric>``;
    ``messages.persisted.<type>.<metric>`` into ``messages.persisted.all``.
    """
    derived: dict[str, int] = {}

    def add(key: str, value: int) -> None:
        derived[key] = derived.get(key, 0) + value

    for key, value in entries.items():
        parts = key.split(".")
        if len(parts) == 5 and parts[0] == "messages" and parts[1] in ("inbound", "outbound"):
            _, direction, transport, kind, metric = parts
            if transport == "all" or kind == "all":
                continue
            add(f"messages.{direction}.all.{kind}.{metric}", value)
            add(f"messages.{direction}.{transport}.all.{metric}", value)
            add(f"messages.{direction}.all.all.{metric}", value)
            add(f"messages.all.{kind}.{metric}", value)
        elif len(parts) == 4 and parts[:2] == ["messages", "persisted"] and parts[2] != "all":
            add(f"messages.persisted.all.{parts[3]}", value)
    merged = {**derived, **entries}
    totals: dict[str, int] = {}
    for key, value in merged.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["messages", "all"] and parts[2] != "all":
            totals[f"messages.all.all.{parts[3]}"] = (
                totals.get(f"messages.all.all.{parts[3]}", 0) + value
            )
    return {**totals, **merged}


def _in_progress(interval: str, latest_minute: str, now_ms: int) -> str | None:
    """The last sub-interval included when ``interval`` has not ended yet (TS12t)."""
    if now_ms > _interval_end(interval):
        return None
    return f"{latest_minute}:00"


def query(
    app: App,
    *,
    unit: str,
    start: str | None,
    end: str | None,
    backwards: bool,
    limit: int,
    cursor: str | None,
    modern: bool,
    now_ms: int | None = None,
) -> Page:
    if unit not in _UNIT_LEN:
        raise error(40003, f"invalid unit {unit[:20]!r}")
    width = _UNIT_LEN[unit]
    lo = _bound(start)
    hi = None if end in (None, "") else int(end) if end.isdigit() else _interval_end(end)
    merged: dict[str, dict[str, int]] = {}
    latest: dict[str, str] = {}
    for minute, counters in app.stats.items():
        at = interval_ms(minute)
        if (lo is not None and at < lo) or (hi is not None and at > hi):
            continue
        bucket = merged.setdefault(minute[:width], {})
        latest[minute[:width]] = max(latest.get(minute[:width], minute), minute)
        for entry, value in counters.items():
            bucket[entry] = bucket.get(entry, 0) + value
    ids = sorted(merged, reverse=backwards)
    if cursor is not None:
        ids = [i for i in ids if (i < cursor if backwards else i > cursor)]
    page, more = ids[:limit], len(ids) > limit
    items: list[dict[str, Any]] = []
    for interval in page:
        item: dict[str, Any] = {"intervalId": interval, "unit": unit}
        if modern:
            item.update(schema=SCHEMA, appId=app.app_id, entries=_rollup(merged[interval]))
            progress = _in_progress(interval, latest[interval], now_ms or 0)
            if now_ms is not None and progress is not None:
                item["inProgress"] = progress
        else:
            item.update(_nested(merged[interval]))
        items.append(item)
    return Page(items, page[-1] if more else None)


def _flatten(prefix: str, value: Any, out: dict[str, int]) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), child, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = out.get(prefix, 0) + int(value)


def inject(app: App, fixtures: list[Any]) -> None:
    """Add nested-format fixtures (keyed by ``intervalId``) to the app's counters."""
    for fixture in fixtures:
        if not isinstance(fixture, dict) or not isinstance(fixture.get("intervalId"), str):
            raise error(40001, "stats fixture needs an intervalId")
        interval = fixture["intervalId"]
        interval_ms(interval)
        suffix = {7: "-01:00:00", 10: ":00:00", 13: ":00"}.get(len(interval), "")
        minute = f"{interval}{suffix}"
        flat: dict[str, int] = {}
        for key, value in fixture.items():
            if key in ("intervalId", "unit"):
                continue
            root = f"messages.{key}" if key in _MESSAGE_ROOTS else key
            _flatten(root, value, flat)
        bucket = app.stats.setdefault(minute, {})
        for entry, amount in flat.items():
            bucket[entry] = bucket.get(entry, 0) + amount
