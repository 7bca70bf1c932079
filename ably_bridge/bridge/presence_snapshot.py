"""Live presence snapshots: each channel's current members in a Redis hash.

This module owns :class:`PresenceSnapshot`. For a route with
``presence_snapshot`` configured, the hash named by its key template (default
``ably:presence:{channel}``; placeholders ``{channel}``, ``{route}``, ``{app}``)
holds one field per member - the member key ``connectionId:clientId`` (TP3h) -
whose value is the member's presence message JSON (as in the envelope's
``presence`` array: ``clientId``, ``connectionId``, ``data``, ``encoding``,
``timestamp``, ``id``, ``action``).

* ``apply`` - ENTER, UPDATE and PRESENT set the field; LEAVE and ABSENT delete
  it; a batch is one pipelined round trip, applied in order.
* ``replace`` - at the end of a presence SYNC (or on an ATTACHED without
  HAS_PRESENCE, with no members) the whole hash is replaced in one MULTI/EXEC,
  so readers never see a half-synced member list.
* ``clear`` - on DETACHED/FAILED, the snapshot is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ably_bridge.envelope import SOURCE_PRESENCE, Envelope, dumps

if TYPE_CHECKING:
    import redis

__all__ = ["PresenceSnapshot", "member_key"]

logger = logging.getLogger(__name__)

_ABSENT, _PRESENT, _ENTER, _LEAVE, _UPDATE = 0, 1, 2, 3, 4
_REMOVE = frozenset({_ABSENT, _LEAVE})


def member_key(client_id: str | None, connection_id: str | None) -> str:
    """``connectionId:clientId``, the identity of a presence member (TP3h)."""
    return f"{connection_id or ''}:{client_id or ''}"


class PresenceSnapshot:
    """Keeps member hashes in Redis right through enter/update/leave/sync."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_template: str = "ably:presence:{channel}",
        app_id: str = "",
    ) -> None:
        self._client = client
        self._template = key_template
        self._app_id = app_id

    def key(self, channel: str, route_id: str = "") -> str:
        return self._template.format(channel=channel, route=route_id, app=self._app_id)

    def apply(self, events: Sequence[Envelope]) -> None:
        """Apply presence envelopes in order (one round trip). Raises RedisError."""
        if not events:
            return
        pipe = self._client.pipeline(transaction=False)
        for env in events:
            if env.source != SOURCE_PRESENCE:
                continue
            item = env.item
            key = self.key(env.channel, env.rule_id)
            field = member_key(item.get("clientId"), item.get("connectionId"))
            if int(item.get("action", _PRESENT)) in _REMOVE:
                pipe.hdel(key, field)
            else:
                pipe.hset(key, field, dumps(item))
        pipe.execute()

    def replace(self, channel: str, members: Iterable[Envelope], route_id: str = "") -> None:
        """Replace the channel's whole member list atomically (end of a SYNC)."""
        key = self.key(channel, route_id)
        mapping: dict[str, str] = {}
        for env in members:
            item = env.item
            if int(item.get("action", _PRESENT)) in _REMOVE:
                continue
            mapping[member_key(item.get("clientId"), item.get("connectionId"))] = dumps(item)
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(key)
        if mapping:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.execute()

    def clear(self, channel: str, route_id: str = "") -> None:
        """Drop the snapshot of ``channel`` (channel detached or failed)."""
        self._client.delete(self.key(channel, route_id))

    def members(self, channel: str, route_id: str = "") -> dict[str, str]:
        """The raw member hash: member key -> presence JSON."""
        raw = self._client.hgetall(self.key(channel, route_id))
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
