"""The envelope: one bridged event in the JSON shape of Ably's hosted integrations.

This package owns the envelope format, both sides of it, so the bridge and the
workers cannot drift apart:

* :mod:`ably_bridge.envelope.shape` - the names both sides agree on (sources,
  lifecycle events, the fields of the flat stream layout);
* :mod:`ably_bridge.envelope.encode` - :class:`Envelope`, one event on one
  route as the bridge sends it (Integrations JSON, or flat stream fields);
* :mod:`ably_bridge.envelope.build` - :class:`EnvelopeBuilder`, used by the
  bridge to make one envelope per event and route;
* :mod:`ably_bridge.envelope.decode` - :class:`BridgedEvent`,
  :func:`decode_envelope` and :func:`envelope_from_fields`, used by the workers
  (and the dead-letter replay) to read an envelope back.
"""

from __future__ import annotations

from ably_bridge.envelope.build import (
    DataMode,
    EnvelopeBuilder,
    MessageLike,
    PresenceMessageLike,
    UndecodableEvent,
)
from ably_bridge.envelope.decode import (
    BridgedEvent,
    decode_envelope,
    envelope_from_dict,
    envelope_from_fields,
)
from ably_bridge.envelope.encode import Envelope, dumps
from ably_bridge.envelope.shape import (
    ITEMS_KEY,
    LIFECYCLE_EVENTS,
    SOURCE_LIFECYCLE,
    SOURCE_MESSAGE,
    SOURCE_PRESENCE,
)

__all__ = [
    "ITEMS_KEY",
    "LIFECYCLE_EVENTS",
    "SOURCE_LIFECYCLE",
    "SOURCE_MESSAGE",
    "SOURCE_PRESENCE",
    "BridgedEvent",
    "DataMode",
    "Envelope",
    "EnvelopeBuilder",
    "MessageLike",
    "PresenceMessageLike",
    "UndecodableEvent",
    "decode_envelope",
    "dumps",
    "envelope_from_dict",
    "envelope_from_fields",
]
