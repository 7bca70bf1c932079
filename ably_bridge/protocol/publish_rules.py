"""Checks every publish passes before it leaves the client, REST or realtime.

* :func:`check_client_ids` - RSL1g / RTL6g: an identified client publishes
  only as itself; ``"*"`` is never a message clientId; an unidentified client
  is not checked locally (RTL6g4: the server decides).
* :func:`check_total_size` - RSL1i / RTL6d: the messages of one publish
  together fit in ``max_message_size`` (TM6 sizes), else 40009.
"""

from __future__ import annotations

from collections.abc import Sequence

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message

__all__ = ["check_client_ids", "check_total_size"]


def check_client_ids(batch: Sequence[Message], own_client_id: str | None) -> None:
    """Raise 40012 when a message's clientId is ``"*"`` or not the client's own."""
    for message in batch:
        if message.client_id == "*":
            raise AblyException(
                'a message clientId cannot be "*"', ErrorCode.INVALID_CLIENT_ID, 400
            )
        if own_client_id not in (None, "*") and message.client_id not in (None, own_client_id):
            raise AblyException(
                f"message clientId {message.client_id!r} does not match the client's "
                f"{own_client_id!r}",
                ErrorCode.INVALID_CLIENT_ID,
                400,
            )


def check_total_size(batch: Sequence[Message], limit: int) -> None:
    """Raise 40009 when the messages together are larger than ``limit`` bytes."""
    total = sum(m.size() for m in batch)
    if total > limit:
        raise AblyException(
            f"messages total {total} bytes, more than the {limit} allowed",
            ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED,
            400,
        )
