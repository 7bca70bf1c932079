"""The envelope's names: sources, lifecycle events, the fields of both stream layouts.

This module owns what the encoder (:mod:`ably_bridge.envelope.encode`) and the
decoder (:mod:`ably_bridge.envelope.decode`) must agree on, so that what one
writes the other reads: the constants, and :func:`message_event_id`, the event
id (and so the de-duplication key) of a message operation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ENVELOPE_KEYS",
    "FLAT_INT_FIELDS",
    "FLAT_JSON_FIELDS",
    "ITEMS_KEY",
    "LIFECYCLE_EVENTS",
    "MESSAGE_ACTION_NAMES",
    "SOURCE_LIFECYCLE",
    "SOURCE_MESSAGE",
    "SOURCE_PRESENCE",
    "message_action_name",
    "message_event_id",
]

SOURCE_MESSAGE = "channel.message"
SOURCE_PRESENCE = "channel.presence"
SOURCE_LIFECYCLE = "channel.lifecycle"
LIFECYCLE_EVENTS = frozenset(
    {"attached", "detached", "suspended", "failed", "update", "attaching", "detaching"}
)
# The envelope key holding the one event of a message or presence envelope.
ITEMS_KEY = {SOURCE_MESSAGE: "messages", SOURCE_PRESENCE: "presence"}
# The envelope's own fields (the rest of a flat stream entry are the event's).
ENVELOPE_KEYS = frozenset({"source", "appId", "channel", "site", "ruleId", "timestamp"})
# Event fields a flat stream entry holds as decimal text / as JSON text.
FLAT_INT_FIELDS = frozenset({"timestamp", "action"})
FLAT_JSON_FIELDS = frozenset({"extras", "version", "annotations"})

# TM5: Message actions by wire number, named as ably-js names them.
MESSAGE_ACTION_NAMES = (
    "message.create",
    "message.update",
    "message.delete",
    "meta",
    "message.summary",
    "message.append",
)
_CREATE, _SUMMARY = 0, 4


def message_action_name(action: int | None) -> str:
    """``message.create`` ... ``message.append``; an action newer than TM5 as ``action.<n>``."""
    if action is None:
        return MESSAGE_ACTION_NAMES[_CREATE]  # (before protocol v4 every message was a create)
    if 0 <= action < len(MESSAGE_ACTION_NAMES):
        return MESSAGE_ACTION_NAMES[action]
    return f"action.{action}"


def message_event_id(msg_id: str, item: Mapping[str, Any], envelope_timestamp: int) -> str:
    """The event id of a channel message ``item`` with id ``msg_id`` (TM2a).

    An update, delete or append arrives with the original message's ``id`` and
    ``serial`` (TM2j, TM2r) and its own ``version.serial`` (TM2s1), so each
    operation is an event of its own, ``<id>@<version serial>``; a create (or a
    message without an action, older envelopes included) keeps ``<id>``, so
    de-duplication marks made before operations were told apart stay valid. A
    summary (TM2u) is a snapshot of the message's annotations that has no
    serial of its own: ``<id>@summary:<envelope timestamp>:<digest>``, where the
    envelope timestamp is when the bridge received it, so the same summary
    state coming back later (a reaction added, removed, added again) is not
    mistaken for the first one.
    """
    action = item.get("action")
    if action is None or action == _CREATE:
        return msg_id
    if action == _SUMMARY:
        summary = json.dumps(item.get("annotations"), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(summary.encode()).hexdigest()[:16]
        return f"{msg_id}@summary:{envelope_timestamp}:{digest}"
    version = item.get("version")
    version_serial = version.get("serial") if isinstance(version, Mapping) else None
    if isinstance(version_serial, str) and version_serial and version_serial != item.get("serial"):
        return f"{msg_id}@{version_serial}"
    # TM2s1 says version.serial is there; without it the operation is told by its time.
    when = version.get("timestamp") if isinstance(version, Mapping) else None
    return f"{msg_id}@{message_action_name(int(action))}:{when or item.get('timestamp') or 0}"
