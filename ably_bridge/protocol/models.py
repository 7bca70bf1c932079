"""The wire model: ProtocolMessage, Message, PresenceMessage, ConnectionDetails, ErrorInfo.

The one import path for the Python shape of what travels on the realtime and
REST wires (TR4, TM2, TP3, CD2, TI1). The types live in
:mod:`ably_bridge.protocol.messages` (Message, PresenceMessage) and
:mod:`ably_bridge.protocol.frames` (ProtocolMessage, ConnectionDetails), with
the field readers they share in :mod:`ably_bridge.protocol.fields`; this module
states the conventions all of them follow. No framing (see
:mod:`ably_bridge.protocol.codec`), no I/O.

Conventions:

* ``to_dict(binary=...)`` emits the wire dict: camelCase keys, ``None`` fields
  omitted (RTL6i3, RSL1e). With ``binary=False`` (JSON transport) bytes data
  becomes base64 text with ``base64`` appended to ``encoding`` (RSL4b/RSL4d);
  with ``binary=True`` (msgpack) bytes stay bytes. ``to_dict`` expects payloads
  already encoded (``encoded()``); it never copies nested dicts.
* ``from_dict`` never decodes payloads. ``ProtocolMessage.from_dict`` checks
  the types of its own fields and raises :class:`EncodingError` 40013 on a
  malformed frame; inside ``Message``/``PresenceMessage`` an optional field of
  the wrong type is dropped (set to ``None``) so one odd field does not lose a
  whole frame of messages. Unknown keys are ignored and ``null`` means absent
  (RSF1).
* Payload decoding (``decoded()``, ``from_encoded``) never raises: a failure
  leaves the remaining ``encoding`` in place and sets ``decode_error`` (RSL6b).
"""

from __future__ import annotations

from ably_bridge.errors import AblyException
from ably_bridge.protocol.frames import (
    DEFAULT_CONNECTION_STATE_TTL,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_IDLE_INTERVAL,
    DEFAULT_MAX_MESSAGE_SIZE,
    ConnectionDetails,
    ProtocolMessage,
)
from ably_bridge.protocol.messages import Message, PresenceMessage

__all__ = [
    "DEFAULT_CONNECTION_STATE_TTL",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_IDLE_INTERVAL",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ConnectionDetails",
    "ErrorInfo",
    "Message",
    "PresenceMessage",
    "ProtocolMessage",
]

# ErrorInfo (TI1) is the same object as the library's exception.
ErrorInfo = AblyException
