"""The router: which routes (and so which targets) an event goes to. Pure, no I/O.

This module owns the compiled form of the configured routes and the one
question the data path asks for every event: ``match(channel, source, name)``.
A route selects a channel by exact name, glob or ``re:`` regex (see
:mod:`ably_bridge.bridge.patterns`); a route with discovery but no channel
patterns takes every channel under its discovery prefixes (with patterns, the
prefixes only say where to look and the patterns decide); it
selects a source (``message``, ``presence``, ``lifecycle``); and for messages
it may filter on the message name. The router also answers which cipher key a
route applies to a channel (first matching cipher rule of that route).

Per-channel route lists are cached (channels repeat far more than they vary),
so the hot path is a dict lookup plus a name check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ably_bridge.bridge.config import Route, Source, Target
from ably_bridge.bridge.patterns import NameMatcher, is_pattern
from ably_bridge.bridge.secret import Secret

__all__ = ["CompiledRoute", "RouteMatch", "Router"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A route that wants an event, with the cipher key it applies to the channel."""

    route: Route
    cipher_key: Secret | None

    @property
    def route_id(self) -> str:
        return self.route.id

    @property
    def targets(self) -> tuple[Target, ...]:
        return self.route.targets


class CompiledRoute:
    """A :class:`Route` with its patterns compiled."""

    __slots__ = ("_channels", "_ciphers", "_names", "_prefixes", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        self._channels = NameMatcher(route.channels)
        # Discovery prefixes say where to look for channels; the channel patterns
        # (when there are any) say which of the discovered channels to take.
        prefixes = route.discovery.prefixes if route.discovery else ()
        self._prefixes = prefixes if not route.channels else ()
        self._names = NameMatcher(route.names)
        self._ciphers = tuple((NameMatcher(rule.channels), rule.key) for rule in route.ciphers)

    def selects_channel(self, channel: str) -> bool:
        """Whether this route takes events of ``channel`` at all."""
        if self._channels.matches(channel):
            return True
        return any(channel.startswith(p) for p in self._prefixes)

    @property
    def names_empty(self) -> bool:
        """No name filter: every message name passes."""
        return self._names.empty

    def selects_name(self, name: str | None) -> bool:
        """Whether a message called ``name`` passes the name filter (no filter: all)."""
        if self._names.empty:
            return True
        return name is not None and self._names.matches(name)

    def cipher_for(self, channel: str) -> Secret | None:
        """The cipher key of the first cipher rule matching ``channel``, if any."""
        for matcher, key in self._ciphers:
            if matcher.matches(channel):
                return key
        return None


_Matches = tuple[
    tuple["RouteMatch", ...] | None, tuple[tuple["RouteMatch", "CompiledRoute | None"], ...]
]


class Router:
    """Matches events to routes. Thread-safe for readers; build a new one to reconfigure."""

    def __init__(self, routes: Iterable[Route], *, cache_size: int = 10_000) -> None:
        self._routes = tuple(CompiledRoute(r) for r in routes)
        self._cache: dict[str, tuple[tuple[CompiledRoute, Secret | None], ...]] = {}
        # (channel, source) -> (the answer, when no route of it filters by name;
        # else its matches in configuration order, each with the route whose name
        # filter still applies, or None).
        self._matches: dict[tuple[str, Source], _Matches] = {}
        self._cache_size = cache_size

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(c.route for c in self._routes)

    def _for_channel(self, channel: str) -> tuple[tuple[CompiledRoute, Secret | None], ...]:
        hit = self._cache.get(channel)
        if hit is None:
            hit = tuple(
                (c, c.cipher_for(channel)) for c in self._routes if c.selects_channel(channel)
            )
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # cheap and rare: channel sets are usually small
            self._cache[channel] = hit
        return hit

    def match(self, channel: str, source: Source, name: str | None = None) -> Sequence[RouteMatch]:
        """The routes that want this event, in configuration order.

        ``name`` is the message name; name filters apply to messages only. Called
        for every event: the answer for a channel and source is kept, and when no
        route of it filters by name it is returned as is (do not change it).
        """
        found = self._matches.get((channel, source))
        if found is None:
            found = self._compute_matches(channel, source)
        plain, entries = found
        if plain is not None:
            return plain
        return [match for match, named in entries if named is None or named.selects_name(name)]

    def _compute_matches(self, channel: str, source: Source) -> _Matches:
        entries = tuple(
            (
                RouteMatch(compiled.route, cipher),
                compiled if source == "message" and not compiled.names_empty else None,
            )
            for compiled, cipher in self._for_channel(channel)
            if source in compiled.route.sources
        )
        if len(self._matches) >= self._cache_size:
            self._matches.clear()  # like the channel cache: cheap and rare
        unfiltered = all(named is None for _, named in entries)
        found = (tuple(match for match, _ in entries) if unfiltered else None, entries)
        self._matches[(channel, source)] = found
        return found

    def wants(self, channel: str, source: Source | None = None) -> bool:
        """Whether any route takes ``channel`` (for ``source``, if given)."""
        routes = self._for_channel(channel)
        if source is None:
            return bool(routes)
        return any(source in c.route.sources for c, _ in routes)

    def routes_for(self, channel: str, source: Source) -> list[Route]:
        """The routes taking ``source`` events of ``channel``, whatever their name filter."""
        return [c.route for c, _ in self._for_channel(channel) if source in c.route.sources]

    def sources_for(self, channel: str) -> frozenset[Source]:
        """Every source some route wants from ``channel`` (decides what to subscribe)."""
        out: set[Source] = set()
        for compiled, _ in self._for_channel(channel):
            out |= compiled.route.sources
        return frozenset(out)

    def cipher_key(self, channel: str) -> Secret | None:
        """The cipher key to attach ``channel`` with: the first route's that has one."""
        for _, key in self._for_channel(channel):
            if key is not None:
                return key
        return None

    def static_channels(self) -> list[str]:
        """Exact channel names configured in any route (attached at start-up)."""
        seen: dict[str, None] = {}
        for compiled in self._routes:
            for text in compiled.route.channels:
                if not is_pattern(text):
                    seen.setdefault(text, None)
        return list(seen)

    def discovery(self) -> list[tuple[str, float]]:
        """``(prefix, interval)`` pairs to poll the REST channel enumeration with."""
        out: list[tuple[str, float]] = []
        for compiled in self._routes:
            disc = compiled.route.discovery
            if disc is not None:
                out.extend((p, disc.interval) for p in disc.prefixes)
        return out
