"""Backfill: the messages a channel missed, read from REST history.

This module owns :func:`gap_messages` (where a channel's gap starts, from its
routes' checkpoints) and :class:`RestHistory`, the :class:`~ably_bridge.bridge.source.HistorySource`
over ``GET /channels/{ch}/messages``. The gap to close after an attach without
continuity is ``(checkpoint, attach point]``:

* with an attach serial (``untilAttach``, RTL10b) it reads **backwards** from
  ``fromSerial=<attachSerial>`` - so nothing published after the attach comes
  back (those arrive live) - and stops at the first message that is not after
  the checkpoint (same id, an earlier serial, or an earlier timestamp); the
  page walk is bounded below by ``start=<checkpoint timestamp>`` too;
* without one it reads everything after the checkpoint up to now (the daemon
  drops the overlap with live events by event: id, and
  version serial for an update, delete or append, see :mod:`.backfill_versions`).

Messages come back oldest first and **still encoded** (``Message.from_dict``),
because the dispatcher decodes per route (each route has its own cipher and
data mode). A gap larger than ``max_messages`` is cut at its oldest end and
logged as an error: the checkpoint is too old for the history to close it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ably_bridge.bridge.backfill_versions import changed_after, with_versions
from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.core.backfill_plan import plan_gap
from ably_bridge.bridge.source import PresenceHistoryUnavailable, after_position
from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message, PresenceMessage

if TYPE_CHECKING:
    from ably_bridge.bridge.checkpoint import CheckpointStore
    from ably_bridge.bridge.source import HistorySource
    from ably_bridge.rest.client import AblyRest
    from ably_bridge.rest.pagination import HttpPaginatedResponse

__all__ = ["RestHistory", "check_response", "gap_messages", "gap_presence"]

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000


def gap_messages(
    checkpoints: CheckpointStore | None,
    history: HistorySource,
    channel: str,
    routes: list[str],
    attach_serial: str | None,
    seed: Position,
    read_seed: bool = False,
) -> list[Message]:
    """The messages ``channel`` missed, for its message ``routes``: from the oldest of
    their checkpoints up to the attach point.

    A route without a checkpoint gets ``seed`` (the channel's fixed start point,
    :mod:`.core.start_points`) as its first one, so that a crash before its first
    delivery still backfills. A channel no route has a checkpoint for starts at
    its attach point (nothing to backfill), unless ``read_seed``: it was
    discovered (active before the poll that found it), or this is not the
    first backfill of its first attachment, so it is read from ``seed``.
    """
    loaded = {r: checkpoints.load(r, channel) if checkpoints else None for r in routes}
    plan = plan_gap(loaded, seed, read_seed)
    if checkpoints is not None:
        for route_id in plan.seed_tracks:
            checkpoints.advance(route_id, channel, seed)
    if plan.read_from is None:
        return []  # first time on this channel: start at the attach point
    oldest = plan.read_from
    return history.since(channel, oldest, attach_serial)


def gap_presence(
    checkpoints: CheckpointStore | None,
    history: HistorySource,
    channel: str,
    tracks: list[str],
    seed: Position,
    read_seed: bool = False,
) -> list[PresenceMessage]:
    """The presence events ``channel`` missed, for its routes' presence ``tracks``
    (:func:`~.core.position.presence_track`): from the oldest of their presence
    checkpoints up to now (presence history has no attach point; the daemon drops
    the live copies by id). Seeded and started like :func:`gap_messages`;
    raises :class:`~.source.PresenceHistoryUnavailable` when it cannot be read."""
    loaded = {t: checkpoints.load(t, channel) if checkpoints else None for t in tracks}
    plan = plan_gap(loaded, seed, read_seed)
    if checkpoints is not None:
        for track in plan.seed_tracks:
            checkpoints.advance(track, channel, seed)
    if plan.read_from is None:
        return []
    oldest = plan.read_from
    return history.presence_since(channel, oldest)


def check_response(response: HttpPaginatedResponse, what: str) -> None:
    """Raise the Ably error a ``rest.request`` answer carries (it reports, not raises)."""
    if response.success:
        return
    raise AblyException(
        f"{what} failed: {response.error_message or 'HTTP ' + str(response.status_code)}",
        response.error_code or 50000,
        response.status_code,
    )


class RestHistory:
    """Reads channel history for backfill over REST (thread-safe: AblyRest is)."""

    def __init__(
        self,
        rest: AblyRest,
        *,
        page_limit: int = PAGE_LIMIT,
        max_messages: int = 1_000_000,
        operations_lookback_ms: int = 0,
    ) -> None:
        self._rest = rest
        self._page_limit = page_limit
        self._max = max_messages
        self._lookback = operations_lookback_ms

    def since(
        self, channel: str, position: Position | None, until_serial: str | None
    ) -> list[Message]:
        """The messages after ``position`` up to ``until_serial``, oldest first; a message
        changed since its create comes back as each of its versions (:mod:`.backfill_versions`).

        With an operations look-back, history is read that much further back than
        ``position`` for messages changed after it (their operations after it only)."""
        messages = self._history_since(channel, position, until_serial)
        after = position.serial if position is not None and self._lookback else None
        return with_versions(self._rest, channel, messages, until_serial, after)

    def _history_since(
        self, channel: str, position: Position | None, until_serial: str | None
    ) -> list[Message]:
        params: dict[str, Any] = {"direction": "backwards", "limit": self._page_limit}
        if until_serial:
            # RTL10b: the spec and ably-go send fromSerial; the REST client has no
            # until_attach parameter yet, so the query is built here.
            params["fromSerial"] = until_serial
        floor = 0  # looking back for changed messages down to this time (0: not)
        if position is not None and position.timestamp > 0:
            params["start"] = max(1, position.timestamp - self._lookback)
            floor = params["start"] if self._lookback else 0
        path = "/channels/" + quote(channel, safe="") + "/messages"
        newest_first: list[Message] = []
        page: HttpPaginatedResponse | None = self._rest.request("GET", path, params=params)
        while page is not None:
            check_response(page, f"history of {channel}")
            for raw in page.items:
                message = Message.from_dict(raw)
                if position is not None and after_position(message, position) is False:
                    if not floor or (message.timestamp or 0) < floor:
                        return _oldest_first(newest_first)
                    if not changed_after(message, position):
                        continue  # (looking back: only messages changed since the checkpoint)
                newest_first.append(message)
                if len(newest_first) >= self._max:
                    logger.error(
                        "backfill of %s cut at %d messages; older ones are not replayed",
                        channel,
                        self._max,
                        extra={"channel": channel},
                    )
                    return _oldest_first(newest_first)
            page = page.next() if page.has_next() else None  # type: ignore[assignment]
        return _oldest_first(newest_first)

    def presence_since(self, channel: str, position: Position | None) -> list[PresenceMessage]:
        """Presence history (RSP4) after ``position``, oldest first; read backwards so
        the walk stops at the checkpoint. A 4xx answer other than 429 (history not
        kept or not allowed) is :class:`~.source.PresenceHistoryUnavailable`."""
        params: dict[str, Any] = {"direction": "backwards", "limit": self._page_limit}
        if position is not None and position.timestamp > 0:
            params["start"] = position.timestamp
        path = "/channels/" + quote(channel, safe="") + "/presence/history"
        newest_first: list[PresenceMessage] = []
        page: HttpPaginatedResponse | None = self._rest.request("GET", path, params=params)
        while page is not None:
            status = page.status_code or 0
            if not page.success and 400 <= status < 500 and status != 429:
                raise PresenceHistoryUnavailable(
                    f"presence history of {channel}: {page.error_message or status}"
                )
            check_response(page, f"presence history of {channel}")
            for raw in page.items:
                event = PresenceMessage.from_dict(raw)
                if position is not None and after_position(event, position) is False:
                    return _oldest_first(newest_first)
                newest_first.append(event)
                if len(newest_first) >= self._max:
                    logger.error(
                        "presence backfill of %s cut at %d events", channel, self._max,
                        extra={"channel": channel},
                    )  # fmt: skip
                    return _oldest_first(newest_first)
            page = page.next() if page.has_next() else None  # type: ignore[assignment]
        return _oldest_first(newest_first)


def _oldest_first(newest_first: list[Any]) -> list[Any]:
    newest_first.reverse()
    return newest_first
