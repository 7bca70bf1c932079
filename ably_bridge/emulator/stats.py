"""Application stats: per-minute counters, aggregation, and both wire shapes (section 8).

Counters live in ``App.stats`` as ``{"yyyy-mm-dd:hh:mm": {"dotted.entry": n}}``.
:func:`query` aggregates them by unit (minute/hour/day/month) and renders the
v3+ ``entries`` form or, for older protocol versions, the legacy nested form;
:func:`inject` accepts the sandbox's nested fixtures (``POST /stats``).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from typing import Any

from ably_bridge.emulator.apps import App
from ably_bridge.emulator.channels import Page
from ably_bridge.emulator.proto import error

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
) -> Page:
    if unit not in _UNIT_LEN:
        raise error(40003, f"invalid unit {unit[:20]!r}")
    width = _UNIT_LEN[unit]
    lo, hi = _bound(start), _bound(end)
    merged: dict[str, dict[str, int]] = {}
    for minute, counters in app.stats.items():
        at = interval_ms(minute)
        if (lo is not None and at < lo) or (hi is not None and at > hi):
            continue
        bucket = merged.setdefault(minute[:width], {})
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
            item.update(schema=SCHEMA, appId=app.app_id, entries=dict(merged[interval]))
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
