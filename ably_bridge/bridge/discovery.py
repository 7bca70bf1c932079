"""Discovery: active channels found by prefix through the REST channel enumeration.

This module owns :class:`RestDirectory` (``GET /channels?prefix=<p>&by=id``,
paginated; the :class:`~ably_bridge.bridge.source.ChannelDirectory` the daemon
polls), :func:`discovery_prefixes` (each route's ``discover`` prefixes, or the
literal prefix of its channel patterns) and :class:`DiscoverySchedule`, which
says which prefixes are due for a poll. Polls run off the delivery thread; the
daemon attaches every listed channel that a route wants, and a channel found
this way is backfilled from one poll interval before it was found.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ably_bridge.bridge.backfill import check_response
from ably_bridge.bridge.patterns import REGEX_PREFIX, is_pattern

if TYPE_CHECKING:
    from ably_bridge.bridge.config import Route
    from ably_bridge.rest.client import AblyRest
    from ably_bridge.rest.pagination import HttpPaginatedResponse

__all__ = ["DEFAULT_INTERVAL", "DiscoverySchedule", "RestDirectory", "discovery_prefixes"]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0  # seconds, as Discovery's default
_REGEX_SPECIAL = set(".^$*+?{}[]\\|()")


def literal_prefix(pattern: str) -> str | None:
    """The fixed start of a glob (``chat:*`` -> ``chat:``) or an anchored ``re:^...``."""
    if not is_pattern(pattern):
        return None
    if pattern.startswith(REGEX_PREFIX):
        source = pattern[len(REGEX_PREFIX) :]
        if not source.startswith("^"):
            return None
        out = []
        for char in source[1:]:
            if char in _REGEX_SPECIAL:
                break
            out.append(char)
        return "".join(out) or None
    cut = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=len(pattern))
    return pattern[:cut] or None


def discovery_prefixes(routes: Iterable[Route]) -> list[tuple[str, float]]:
    """``(prefix, interval)`` to poll: each route's ``discover`` prefixes, and for a route
    without ``discover``, the literal prefix of each channel pattern (so ``chat:*`` finds
    the active ``chat:`` channels every 30 s)."""
    out: list[tuple[str, float]] = []
    for route in routes:
        if route.discovery is not None:
            out.extend((p, route.discovery.interval) for p in route.discovery.prefixes)
            continue
        for pattern in route.channels:
            prefix = literal_prefix(pattern)
            if prefix is not None:
                out.append((prefix, DEFAULT_INTERVAL))
            elif is_pattern(pattern):
                logger.warning(
                    "route %s: channel pattern %r has no literal prefix and the route has no "
                    "discover; it only matches channels another route attaches",
                    route.id,
                    pattern,
                )
    return out


class RestDirectory:
    """Lists active channels by prefix over REST (needs ``channel-metadata`` on ``*``)."""

    def __init__(self, rest: AblyRest, *, page_limit: int = 1000, max_channels: int = 100_000):
        self._rest = rest
        self._page_limit = page_limit
        self._max = max_channels

    def list_channels(self, prefix: str) -> list[str]:
        params = {"prefix": prefix, "by": "id", "limit": self._page_limit}
        names: list[str] = []
        page: HttpPaginatedResponse | None = self._rest.request("GET", "/channels", params=params)
        while page is not None and len(names) < self._max:
            check_response(page, f"channel enumeration of {prefix!r}")
            for item in page.items:
                name = _channel_name(item)
                if name and name.startswith(prefix):
                    names.append(name)
            page = page.next() if page.has_next() else None  # type: ignore[assignment]
        return names


def _channel_name(item: object) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):  # by=value: ChannelDetails
        value = item.get("channelId") or item.get("name")
        return value if isinstance(value, str) else None
    return None


class DiscoverySchedule:
    """When each discovery prefix is next polled (monotonic seconds; no clock reads)."""

    def __init__(self, prefixes: Iterable[tuple[str, float]], now: float) -> None:
        self._interval: dict[str, float] = {}
        for prefix, interval in prefixes:
            # Two routes may poll one prefix: the shorter interval wins.
            self._interval[prefix] = min(interval, self._interval.get(prefix, interval))
        self._next = dict.fromkeys(self._interval, now)
        self._busy: set[str] = set()

    @property
    def prefixes(self) -> list[str]:
        return list(self._interval)

    def due(self, now: float) -> list[str]:
        """Prefixes whose poll is due and not already running; marks them running."""
        out = [p for p, at in self._next.items() if at <= now and p not in self._busy]
        self._busy.update(out)
        return out

    def interval(self, prefix: str) -> float:
        return self._interval.get(prefix, DEFAULT_INTERVAL)

    def done(self, prefix: str, now: float) -> None:
        """A poll finished (either way): the next one is one interval later."""
        self._busy.discard(prefix)
        if prefix in self._interval:
            self._next[prefix] = now + self._interval[prefix]

    def next_due(self, now: float) -> float | None:
        """Seconds until the next poll is due (0: now), or None without prefixes."""
        waiting = [at for p, at in self._next.items() if p not in self._busy]
        return max(0.0, min(waiting) - now) if waiting else None
