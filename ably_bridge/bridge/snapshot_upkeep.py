"""Keeping routes' presence snapshots in step with the presence events dispatched.

This module owns :class:`SnapshotUpkeep`, the dispatcher's side of the live
presence snapshots (:mod:`.presence_snapshot`): a delivered presence frame is
applied to the snapshot of every route that keeps one, a completed SYNC
replaces it, a detached or failed channel clears it. A snapshot that fails is
logged and left for the next SYNC to repair: it never stops delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ably_bridge.envelope import (
    Envelope,
    EnvelopeBuilder,
    PresenceMessageLike,
    UndecodableEvent,
)

if TYPE_CHECKING:
    from ably_bridge.bridge.config import Route
    from ably_bridge.bridge.presence_snapshot import PresenceSnapshot
    from ably_bridge.bridge.router import RouteMatch
    from ably_bridge.bridge.secret import Secret
    from ably_bridge.encoding.crypto import ChannelCipher

__all__ = ["SnapshotUpkeep"]

logger = logging.getLogger(__name__)


class SnapshotUpkeep:
    """See the module docstring; ``snapshot_for`` gives a route's snapshot (None: none)."""

    def __init__(
        self,
        snapshot_for: Callable[[Route], PresenceSnapshot | None],
        builder: EnvelopeBuilder,
        cipher: Callable[[Secret | None], ChannelCipher | None],
    ) -> None:
        self._snapshot_for = snapshot_for
        self._builder = builder
        self._cipher = cipher

    def synced(
        self, channel: str, matches: Iterable[RouteMatch], members: Sequence[PresenceMessageLike]
    ) -> None:
        """A presence SYNC completed: replace each snapshot of ``channel`` with ``members``."""
        for match in matches:
            snapshot = self._snapshot_for(match.route)
            if snapshot is None:
                continue
            envs = []
            for msg in members:
                try:
                    envs.append(
                        self._builder.presence(
                            channel, msg, match.route.id, mode=match.route.data,
                            cipher=self._cipher(match.cipher_key),
                        )
                    )  # fmt: skip
                except UndecodableEvent:
                    logger.warning("undecodable presence member on %s left out", channel)
            try:
                snapshot.replace(channel, envs, match.route.id)
            except Exception as exc:  # a stale snapshot must not stop delivery
                logger.warning("presence snapshot of %s not replaced: %s", channel, exc)

    def apply(self, envs: list[tuple[RouteMatch, Envelope | None, Any]]) -> None:
        """Presence events were accepted: apply them to their routes' snapshots, in order."""
        per_route: dict[str, tuple[PresenceSnapshot, list[Envelope]]] = {}
        for match, env, _ in envs:
            if env is None or match.route.presence_snapshot is None:
                continue
            entry = per_route.get(match.route.id)
            if entry is None:
                snapshot = self._snapshot_for(match.route)
                if snapshot is None:
                    continue
                entry = (snapshot, [])
                per_route[match.route.id] = entry
            entry[1].append(env)
        for snapshot, items in per_route.values():
            try:
                snapshot.apply(items)
            except Exception as exc:  # the next SYNC repairs a snapshot
                logger.warning("presence snapshot update failed: %s", exc)

    def clear(self, route: Route, channel: str) -> None:
        """``channel`` detached or failed: drop ``route``'s snapshot of it."""
        if route.presence_snapshot is None:
            return
        snapshot = self._snapshot_for(route)
        if snapshot is None:
            return
        try:
            snapshot.clear(channel, route.id)
        except Exception as exc:
            logger.warning("presence snapshot of %s not cleared: %s", channel, exc)
