"""Opening a connection: RTN2 params, RTN11 connect, RTN14 failures, RTB1 retries, RTN12 close."""

from __future__ import annotations

import pytest

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import CloseTransport, OpenTransport, RequestToken
from ably_bridge.protocol.models import ProtocolMessage

from ..harness import KEY, FixedRandom, Harness, connected_frame, err, of, options


def test_rtn2_query_params_for_basic_auth() -> None:
    h = Harness(
        options(
            client_id="me",
            echo_messages=False,
            use_binary_protocol=False,
            transport_params={"heartbeats": False, "extra": 5},
        )
    )
    effects = h.connect()
    assert h.conn_events() == ["connecting"]
    (open_,) = of(OpenTransport, effects)
    assert open_.host == "main.realtime.ably.net"
    assert open_.params == {
        "format": "json",
        "echo": "false",
        "heartbeats": "false",
        "v": "6",
        "key": KEY,
        "clientId": "me",
        "extra": "5",
    }
    assert KEY not in repr(open_)
    assert h.core.host == "main.realtime.ably.net"


def test_rtn23b_heartbeats_param_and_token_auth_params() -> None:
    h = Harness(options(key=None, token="tok"), ping_frames_observable=True)
    (open_,) = of(OpenTransport, h.connect())
    assert open_.params["heartbeats"] == "false"
    assert open_.params["accessToken"] == "tok"
    assert open_.params["format"] == "msgpack" and open_.params["echo"] == "true"
    assert "key" not in open_.params


def test_rtn4b_connecting_then_connected() -> None:
    h = Harness()
    h.connect()
    h.run(h.core.transport_opened(h.tid, h.now))
    h.receive(connected_frame())
    assert h.conn_events() == ["connecting", "connected"]
    assert (h.core.id, h.core.key) == ("conn-1", "key-1")
    assert h.core.details is not None and h.core.error_reason is None


def test_rtn11e_connect_is_noop_while_connecting_or_connected() -> None:
    h = Harness()
    h.connect()
    assert h.connect() == []
    h.receive(connected_frame())
    assert h.connect() == []


def test_rtn14a_invalid_key_fails() -> None:
    h = Harness()
    h.connect()
    effects = h.receive(ProtocolMessage(Action.ERROR, error=err(40005, 400, "Invalid key")))
    assert h.state == "failed"
    assert h.core.error_reason is not None and h.core.error_reason.code == 40005
    assert h.core.id is None and h.core.key is None
    assert of(CloseTransport, effects)


def test_rtn14g_connection_error_fails_with_its_error() -> None:
    h = Harness()
    h.connect()
    h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500, "Internal server error")))
    change = h.conn_changes()[-1]
    assert (change.current.value, change.reason) == (
        "failed",
        err(50000, 500, "Internal server error"),
    )


def test_rtn14b_token_error_renews_once_then_connects() -> None:
    h = Harness(options(key=None, auth_callback=lambda p: "t"))
    effects = h.connect()
    assert of(RequestToken, effects) == [RequestToken(force=False)]
    assert not of(OpenTransport, effects)
    h.run(h.core.token_obtained("t1", h.now))
    assert h.opens()[-1].params["accessToken"] == "t1"
    effects = h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401, "Token expired")))
    assert of(RequestToken, effects)[0].force is True
    assert h.state == "connecting"
    h.run(h.core.token_obtained("t2", h.now))
    assert h.opens()[-1].params["accessToken"] == "t2"
    h.receive(connected_frame())
    assert h.state == "connected"
    assert len(h.opens()) == 2


def test_rtn14b_second_token_error_means_disconnected() -> None:
    h = Harness()
    h.connect()
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401)))
    h.run(h.core.token_obtained("t2", h.now))
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401)))
    assert h.state == "disconnected"
    assert h.core.error_reason is not None and h.core.error_reason.code == 40142


def test_rtn14b_renewal_failure_means_disconnected() -> None:
    h = Harness()
    h.connect()
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401)))
    h.run(h.core.token_failed(err(40171, 401, "Unable to renew token"), h.now))
    assert h.state == "disconnected"
    assert h.core.error_reason == err(40171, 401, "Unable to renew token")


def test_rsa4d_auth_403_means_failed() -> None:
    h = Harness(options(key=None, auth_url="https://auth"))
    h.connect()
    h.run(h.core.token_failed(err(80019, 403), h.now))
    assert h.state == "failed"


def test_rsa4a2_token_error_without_renewal_fails_with_40171() -> None:
    h = Harness(options(key=None, token="expired"))
    h.connect()
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401, "Token expired")))
    assert h.state == "failed"
    reason = h.core.error_reason
    assert (
        reason is not None
        and reason.code == 40171
        and reason.cause == err(40142, 401, "Token expired")
    )


def test_rtn14c_attempt_timeout_disconnects() -> None:
    h = Harness(options(realtime_request_timeout=1.0, disconnected_retry_timeout=1.0))
    h.connect()
    assert h.core.next_deadline() == pytest.approx(1.0)
    h.advance(0.5)
    assert h.state == "connecting"
    effects = h.advance(0.6)
    assert h.state == "disconnected"
    reason = h.core.error_reason
    assert reason is not None and "timeout" in reason.message
    assert of(CloseTransport, effects)


def test_rtn14d_retry_after_recoverable_failure_with_rtb1_delay() -> None:
    h = Harness(options(disconnected_retry_timeout=1.0))
    h.connect()
    h.drop()
    change = h.conn_changes()[-1]
    assert change.current.value == "disconnected" and change.retry_in == pytest.approx(1.0)
    assert h.core.next_deadline() == pytest.approx(1.0)
    h.advance(0.9)
    assert h.state == "disconnected"
    h.advance(0.2)
    assert h.state == "connecting"
    h.receive(connected_frame())
    assert h.state == "connected"
    assert len(h.opens()) == 2


def test_rtb1_retry_delays_grow_with_jitter() -> None:
    h = Harness(options(disconnected_retry_timeout=1.0), rng=FixedRandom(0.0))
    h.connect()
    delays = []
    for _ in range(5):
        h.drop()
        delays.append(h.conn_changes()[-1].retry_in)
        h.advance(h.core.next_deadline() - h.now)  # type: ignore[operator]
    assert delays == pytest.approx([0.8, 0.8 * 4 / 3, 0.8 * 5 / 3, 1.6, 1.6])


def test_rtn14e_suspended_after_connection_state_ttl() -> None:
    h = Harness(options(disconnected_retry_timeout=1.0, connection_state_ttl=5.0))
    h.connect()
    h.drop()
    while h.state != "suspended":
        h.advance(1.0)
        if h.state == "connecting":
            h.drop()
    assert h.now == pytest.approx(5.0)
    change = h.conn_changes()[-1]
    assert change.reason is not None and change.reason.code == 80002
    assert change.retry_in == pytest.approx(30.0)


def test_rtn14e_suspend_timer_fires_while_disconnected() -> None:
    h = Harness(options(disconnected_retry_timeout=100.0, connection_state_ttl=5.0))
    h.connect()
    h.drop()
    assert h.core.next_deadline() == pytest.approx(5.0)
    h.advance(5.0)
    assert h.state == "suspended"


def test_rtn14f_suspended_retries_forever_then_connects() -> None:
    h = Harness(
        options(
            disconnected_retry_timeout=0.5, suspended_retry_timeout=1.0, connection_state_ttl=0.1
        )
    )
    h.connect()
    h.drop()
    h.advance(0.2)
    assert h.state == "suspended"
    for _ in range(3):
        h.advance(1.0)
        assert h.state == "connecting"
        h.drop()
        assert h.state == "suspended"  # a failed attempt from SUSPENDED stays SUSPENDED
    h.advance(1.0)
    h.receive(connected_frame())
    assert h.state == "connected"


def test_disconnected_frame_while_connecting_is_a_recoverable_failure() -> None:
    h = Harness()
    h.connect()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(80003, 400)))
    assert h.state == "disconnected"


def test_rtn11c_connect_while_disconnected_skips_the_wait() -> None:
    h = Harness()
    h.connect()
    h.drop()
    h.connect()
    assert h.state == "connecting"
    assert len(h.opens()) == 2


def test_rtn11d_connect_after_failed_resets() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    h.core.queue.next_serial = 7
    h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
    assert h.channel_state("chat") == "failed"
    h.connect()
    assert h.channel_state("chat") == "initialized"
    assert h.core.error_reason is None and h.core.msg_serial == 0
    assert "resume" not in h.opens()[-1].params


def test_rtn12a_close_when_connected() -> None:
    h = Harness()
    h.establish()
    effects = h.close()
    assert h.sent_actions(effects) == [Action.CLOSE]
    assert h.state == "closing" and h.core.id is None
    h.receive(ProtocolMessage(Action.CLOSED))
    assert h.conn_events()[-2:] == ["closing", "closed"]
    assert h.close() == []


def test_rtn12b_close_times_out() -> None:
    h = Harness(options(realtime_request_timeout=2.0))
    h.establish()
    h.close()
    h.advance(2.0)
    assert h.state == "closed"


def test_rtn12c_transport_loss_while_closing() -> None:
    h = Harness()
    h.establish()
    h.close()
    h.drop()
    assert h.state == "closed"


def test_rtn12f_close_while_connecting_then_connected() -> None:
    h = Harness()
    h.connect()
    h.close()
    assert h.state == "closing"
    effects = h.receive(connected_frame())
    assert h.sent_actions(effects) == [Action.CLOSE]
    h.receive(ProtocolMessage(Action.CLOSED))
    assert h.state == "closed"
    assert "connected" not in h.conn_events()


def test_rtn12f_close_while_connecting_times_out() -> None:
    h = Harness(options(realtime_request_timeout=1.0))
    h.connect()
    h.close()
    h.advance(1.0)
    assert h.state == "closed"


@pytest.mark.parametrize("setup", ["initialized", "disconnected", "suspended", "awaiting_token"])
def test_rtn12d_close_without_transport_is_immediate(setup: str) -> None:
    h = Harness(options(connection_state_ttl=0.1, key=None, auth_url="https://x"))
    if setup != "initialized":
        h.connect()
        if setup != "awaiting_token":
            h.run(h.core.token_obtained("t", h.now))
            h.drop()
        if setup == "suspended":
            h.advance(1.0)
            h.drop() if h.state == "connecting" else None
    assert h.state == ("connecting" if setup == "awaiting_token" else setup)
    h.close()
    assert h.state == "closed"


def test_rtn11b_connect_while_closing_uses_a_new_transport() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    old = h.tid
    h.close()
    h.connect()
    assert h.state == "connecting" and h.tid == old + 1
    assert h.chan_events("chat")[-2:] == ["detached", "initialized"]
    # the CLOSED of the old transport does not touch the new one
    assert h.run(h.core.frame_received(old, ProtocolMessage(Action.CLOSED), h.now)) == []
    assert h.state == "connecting"


def test_failed_and_closed_ignore_close_and_stale_input() -> None:
    h = Harness()
    h.connect()
    h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500)))
    assert h.close() == []
    assert h.drop() == []
    assert h.run(h.core.transport_opened(h.tid, 1.0)) == []
    assert h.core.next_deadline() is None


def test_rsa1_a_key_never_goes_over_plain_websocket_to_another_host() -> None:
    h = Harness(options(tls=False, realtime_host="ably.example.com"))
    effects = h.connect()
    assert not of(OpenTransport, effects)  # nothing was dialled
    assert h.state == "failed"
    reason = h.core.error_reason
    assert reason is not None and (reason.code, reason.status_code) == (40103, 401)
    for allowed in (
        options(tls=False, realtime_host="127.0.0.1"),  # this machine: the emulator
        options(tls=False, realtime_host="ably.example.com", insecure_allow_basic_over_http=True),
        options(tls=True, realtime_host="ably.example.com"),
        options(key=None, token="tok", tls=False, realtime_host="ably.example.com"),
    ):
        h = Harness(allowed)
        assert of(OpenTransport, h.connect()), allowed
