"""Client-side publish checks shared by REST and realtime (RSL1g/RTL6g, RSL1i/RTL6d)."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.publish_rules import check_client_ids, check_total_size


@pytest.mark.parametrize(
    ("own", "message_client_id"),
    [(None, None), (None, "anyone"), ("*", "anyone"), ("alice", "alice"), ("alice", None)],
)
def test_allowed_client_ids(own: str | None, message_client_id: str | None) -> None:
    check_client_ids([Message("n", "d", client_id=message_client_id)], own)


@pytest.mark.parametrize(("own", "message_client_id"), [("alice", "bob"), (None, "*")])
def test_refused_client_ids_are_40012(own: str | None, message_client_id: str) -> None:
    with pytest.raises(AblyException) as info:
        check_client_ids([Message("n", "d"), Message("n", "d", client_id=message_client_id)], own)
    assert info.value.code == 40012


def test_total_size_counts_every_message() -> None:
    batch = [Message("ab", "cdef"), Message("g", "hij")]  # 6 + 4 bytes
    check_total_size(batch, 10)
    with pytest.raises(AblyException) as info:
        check_total_size(batch, 9)
    assert info.value.code == 40009
    assert "10 bytes" in info.value.message
