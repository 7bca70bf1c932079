"""Small branches: deadlines in SUSPENDED, DISCONNECTED while closing, LEAVE delivery, reprs."""

from __future__ import annotations

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.actions import PresenceAction as PA
from ably_bridge.protocol.channel import ReenterHandle
from ably_bridge.protocol.events import DeliverPresence, OpenTransport, RequestToken
from ably_bridge.protocol.models import PresenceMessage, ProtocolMessage

from ..harness import HAS_PRESENCE, Harness, of, options


def test_suspended_deadline_is_the_retry() -> None:
    h = Harness(options(connection_state_ttl=0.5))
    h.connect()
    h.drop()
    h.advance(1.0)
    assert h.state == "suspended"
    assert h.core.next_deadline() == pytest.approx(31.0)
    assert h.advance(1.0) == []


def test_disconnected_frame_while_closing_closes() -> None:
    h = Harness()
    h.establish()
    h.close()
    h.receive(ProtocolMessage(Action.DISCONNECTED))
    assert h.state == "closed"


@pytest.mark.parametrize("renewable", [True, False])
def test_a_token_error_while_closing_closes_without_renewing(renewable: bool) -> None:
    """RTN12: closing wins; a DISCONNECTED with 40142 neither renews nor reconnects."""
    h = Harness() if renewable else Harness(options(key=None, token="t0"))
    h.establish()
    h.close()
    expired = AblyException("token expired", 40142, 401)
    effects = h.receive(ProtocolMessage(Action.DISCONNECTED, error=expired))
    assert h.state == "closed"
    assert of(RequestToken, effects) == [] and of(OpenTransport, effects) == []


def test_leave_is_delivered_outside_a_sync() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat", HAS_PRESENCE)
    h.receive(ProtocolMessage(Action.SYNC, channel="chat"))
    enter = PresenceMessage(PA.ENTER, client_id="a", connection_id="c", id="c:0:0")
    leave = PresenceMessage(PA.LEAVE, client_id="a", connection_id="c", id="c:1:0")
    h.receive(ProtocolMessage(Action.PRESENCE, channel="chat", presence=[enter]))
    (delivered,) = of(
        DeliverPresence,
        h.receive(ProtocolMessage(Action.PRESENCE, channel="chat", presence=[leave])),
    )
    assert delivered.messages == [leave]


def test_reenter_handle_repr() -> None:
    assert repr(ReenterHandle("chat", "me")) == "ReenterHandle('chat', 'me')"
