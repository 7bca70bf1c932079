"""The envelope's names: sources, lifecycle events and the fields of both stream layouts.

This module owns the constants the encoder (:mod:`ably_bridge.envelope.encode`)
and the decoder (:mod:`ably_bridge.envelope.decode`) must agree on, so that
what one writes the other reads.
"""

from __future__ import annotations

__all__ = [
    "ENVELOPE_KEYS",
    "FLAT_INT_FIELDS",
    "FLAT_JSON_FIELDS",
    "ITEMS_KEY",
    "LIFECYCLE_EVENTS",
    "SOURCE_LIFECYCLE",
    "SOURCE_MESSAGE",
    "SOURCE_PRESENCE",
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
FLAT_JSON_FIELDS = frozenset({"extras"})
