"""Deltas on the receiving side (PC3, RTL18-RTL20): one frame's messages made whole.

This module owns :func:`decode_frame`, which takes the messages of one inbound
frame of a channel that has a :class:`~ably_bridge.encoding.payload.DeltaContext`
(the channel asked for ``delta: vcdiff``, or a delta arrived) and, in order:

* checks that each delta names the message before it (``extras.delta.from``,
  RTL20) and applies it to the channel's base payload;
* decodes every payload fully, or - for channels that deliver payloads still
  encoded (``decode=False``) - undoes only a delta's transport base64 and
  ``vcdiff`` step, so the payload is as it would have arrived whole;
* moves the base on (RTL19) and remembers the last message id.

The first delta that cannot be applied ends the frame: it is returned, and the
caller drops the frame and starts the recovery of RTL18 (or fails the channel
when there is no decoder, 40019). Other decoding errors are reported through
``on_error`` and the message is delivered as far as it was decoded (RSL6b).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ably_bridge.encoding.payload import DeltaContext, transport_payload, undo_delta
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher

__all__ = ["DELTA_FAILURES", "decode_frame", "has_delta"]

# The codes that stop a frame: the delta could not be applied, or there is no decoder.
DELTA_FAILURES = (ErrorCode.DELTA_DECODING_FAILED, ErrorCode.MISSING_PLUGIN)


def has_delta(messages: Sequence[Message]) -> bool:
    return any(m.encoding is not None and "vcdiff" in m.encoding for m in messages)


def decode_frame(
    messages: Sequence[Message],
    delta: DeltaContext,
    cipher: ChannelCipher | None,
    decode: bool,
    on_error: Callable[[AblyException], None],
) -> AblyException | None:
    """Make ``messages`` whole (module docstring); the delta failure that ended it, if any."""
    for message in messages:
        encoding = message.encoding
        if encoding is not None and "vcdiff" in encoding:
            error = _source_error(message, delta)
            if error is None:
                if decode:
                    error = message.decode_in_place(cipher, delta)
                else:
                    result = undo_delta(message.data, encoding, delta)
                    message.data, message.encoding = result.data, result.encoding
                    error = result.error
            if error is not None and error.code in DELTA_FAILURES:
                return error
        elif decode and encoding is not None:
            error = message.decode_in_place(cipher, delta)
        else:
            delta.base = transport_payload(message.data, encoding)  # RTL19b
            error = None
        if error is not None:
            on_error(error)
        delta.last_id = message.id
    return None


def _source_error(message: Message, delta: DeltaContext) -> AblyException | None:
    """RTL20: a delta must name the message it applies to, and that must be the last one."""
    extras = message.extras or {}
    info = extras.get("delta")
    source = info.get("from") if isinstance(info, dict) else None
    if source is not None and source == delta.last_id:
        return None
    return AblyException(
        f"delta applies to message {source!r}, but the last message was {delta.last_id!r}",
        ErrorCode.DELTA_DECODING_FAILED,
        400,
    )
