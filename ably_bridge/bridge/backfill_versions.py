"""Backfill of changed messages: every version of a message that history shows changed.

This module owns :func:`with_versions`. Channel history lists a message that
was updated, deleted or appended to once, at its original place, as its latest
version (``action`` other than create, ``version.serial`` its last operation,
TM2j/TM2s). Forwarded as it is, a gap would lose the create and every
operation but the last. So each such message of a gap is replaced by its
versions (``GET /channels/{ch}/messages/{serial}/versions``, RSL14): the create
and one entry per operation, each with its own ``version.serial`` (an append is
stored as an update holding the whole data). The gap then comes back in channel
order, by each event's position: a create's ``serial``, an operation's
``version.serial``. Versions after the attach point are left out: they arrive
live.

What history cannot give back - operations made in the gap on a message
published before it - is described in docs/delivery-guarantees.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message

if TYPE_CHECKING:
    from ably_bridge.bridge.core.position import Position
    from ably_bridge.rest.client import AblyRest
    from ably_bridge.rest.pagination import HttpPaginatedResponse

__all__ = ["changed_after", "event_key", "position_serial", "with_versions"]

_CREATE, _SUMMARY = 0, 4  # TM5


def _changed(message: Message) -> bool:
    """Is this history entry the latest version of a message changed since its create?"""
    action = int(message.action) if message.action is not None else _CREATE
    return action not in (_CREATE, _SUMMARY) and message.serial is not None


def position_serial(message: Message) -> str:
    """The event's channel position: an operation's ``version.serial``, else its ``serial``."""
    if _changed(message) and isinstance(message.version, dict):
        found = message.version.get("serial")
        if isinstance(found, str) and found:
            return found
    return message.serial or ""


def changed_after(message: Message, position: Position) -> bool:
    """Was ``message`` (a history entry) changed after the checkpoint ``position``?"""
    if not _changed(message):
        return False
    if position.serial:
        return position_serial(message) > position.serial
    version = message.version if isinstance(message.version, dict) else {}
    when = version.get("timestamp")
    return isinstance(when, int) and when >= position.timestamp


def event_key(message: Message) -> str | None:
    """What tells this event from the other events of its message, as its envelope's
    event id does: the ``id`` of a create, ``<id>@<version serial>`` of an update,
    delete or append; None for a summary (history never returns one)."""
    if message.id is None:
        return None
    action = int(message.action) if message.action is not None else _CREATE
    if action == _SUMMARY:
        return None
    if action == _CREATE:
        return message.id
    return f"{message.id}@{position_serial(message)}"


def with_versions(
    rest: AblyRest,
    channel: str,
    messages: list[Message],
    until_serial: str | None,
    after_serial: str | None = None,
) -> list[Message]:
    """``messages`` (a gap, oldest first) with each changed message replaced by its
    versions after ``after_serial`` (the checkpoint, when history was read further
    back) up to ``until_serial``, in channel order. Raises what the REST call
    raises (the backfill is retried as a whole)."""
    if not any(_changed(m) for m in messages):
        return messages
    out: list[Message] = []
    for message in messages:
        if not _changed(message) or message.serial is None:
            out.append(message)
            continue
        versions = _versions(rest, channel, message.serial)
        if not versions:  # (gone since history listed it: its latest version will do)
            out.append(message)
            continue
        for version in versions:
            where = position_serial(version)
            if until_serial and where > until_serial:
                continue  # RTL10b: after the attach point, it comes live
            if after_serial and where <= after_serial:
                continue  # delivered before the checkpoint
            out.append(version)
    if all(m.serial for m in out):
        out.sort(key=position_serial)  # (stable: equal positions keep history's order)
    return out


def _versions(rest: AblyRest, channel: str, serial: str) -> list[Message]:
    """Every version of the message ``serial`` (RSL14b), as the server lists them; none
    when the server no longer knows it (404)."""
    path = f"/channels/{quote(channel, safe='')}/messages/{quote(serial, safe='')}/versions"
    found: list[Message] = []
    page: HttpPaginatedResponse | None = rest.request("GET", path)
    while page is not None:
        if page.status_code == 404:
            return []
        if not page.success:
            raise AblyException(
                f"versions of a message of {channel} failed: {page.error_message}",
                page.error_code or 50000,
                page.status_code,
            )
        found.extend(Message.from_dict(raw) for raw in page.items)
        page = page.next() if page.has_next() else None  # type: ignore[assignment]
    return found
