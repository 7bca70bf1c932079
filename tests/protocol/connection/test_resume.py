"""Once connected: RTN15 resume, RTN16 recover, RTN17 fallback, RTN22/24 auth, RTN23, RTN13."""

from __future__ import annotations

import json

import pytest

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import (
    CheckConnectivity,
    CompletePing,
    OpenTransport,
    RequestToken,
    SendFrame,
)
from ably_bridge.protocol.models import Message, ProtocolMessage

from ..harness import Harness, connected_frame, err, of, options


def test_rtn15a_transport_loss_disconnects_then_resumes() -> None:
    h = Harness()
    h.establish()
    h.drop()
    assert h.conn_events() == ["connecting", "connected", "disconnected", "connecting"]
    assert h.conn_changes()[2].retry_in == 0.0
    assert h.opens()[-1].params["resume"] == "key-1"
    h.receive(connected_frame("conn-1", "key-1-updated"))
    assert (h.core.id, h.core.key) == ("conn-1", "key-1-updated")  # RTN15c6, RTN15e


def test_rtn15h3_non_token_disconnected_resumes_at_once() -> None:
    h = Harness()
    h.establish()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(80003, 503, "Service unavailable")))
    assert h.state == "connecting"
    assert h.conn_changes()[-2].reason == err(80003, 503, "Service unavailable")
    assert h.opens()[-1].params["resume"] == "key-1"


def test_disconnected_frame_without_error_and_unexpected_closed() -> None:
    h = Harness()
    h.establish()
    h.receive(ProtocolMessage(Action.DISCONNECTED))
    assert h.state == "connecting"
    h.receive(connected_frame())
    h.advance(15.0)
    h.run(h.core.activity(h.tid, h.now))  # stable again: the next loss is retried at once
    h.receive(ProtocolMessage(Action.CLOSED))
    assert h.state == "connecting"


def test_rtn15h1_token_error_without_renewal_fails() -> None:
    h = Harness(options(key=None, token="tok"))
    h.establish()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(40142, 401, "Token expired")))
    assert h.state == "failed"
    assert h.core.error_reason is not None and h.core.error_reason.code == 40142


def test_rtn15h2_token_error_renews_and_resumes() -> None:
    h = Harness()
    h.establish()
    effects = h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(40142, 401)))
    assert h.state == "connecting"
    assert of(RequestToken, effects)[0].force
    h.run(h.core.token_obtained("renewed", h.now))
    params = h.opens()[-1].params
    assert params["accessToken"] == "renewed" and params["resume"] == "key-1"
    assert "key" not in params
    h.receive(connected_frame("conn-1", "key-1-renewed"))
    assert (h.state, h.core.id, h.core.key) == ("connected", "conn-1", "key-1-renewed")


def test_rtn15h2_renewal_fails_means_disconnected() -> None:
    h = Harness()
    h.establish()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(40142, 401)))
    h.run(h.core.token_failed(err(40101, 401, "Invalid credentials"), h.now))
    assert h.state == "disconnected"
    assert h.core.error_reason == err(40101, 401, "Invalid credentials")


def test_rtn15j_connection_error_fails_connection_and_channels() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500, "Internal error")))
    assert h.state == "failed"
    assert h.channel_state("chat") == "failed"
    assert h.core.channels["chat"].error_reason == err(50000, 500, "Internal error")


def test_rtn15c7_failed_resume_resets_msg_serial() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    for i in range(3):
        h.run(h.core.publish("chat", [Message("m", i)], f"p{i}", h.now))
    h.receive(ProtocolMessage(Action.ACK, msg_serial=0, count=1))
    h.drop()
    resumed_error = err(80008, 400, "Unable to recover connection")
    effects = h.receive(connected_frame("conn-2", "key-2", error=resumed_error))
    assert (h.core.id, h.core.key, h.core.error_reason) == ("conn-2", "key-2", resumed_error)
    assert h.conn_changes()[-1].reason == resumed_error
    resent = [f.msg_serial for f in h.sent(effects) if f.action == Action.MESSAGE]
    assert resent == [0, 1]
    assert h.core.msg_serial == 2
    # RTL3d: the channel re-attaches; without RESUMED it is an ATTACHED with resumed=False
    assert h.sent_actions(effects).count(Action.ATTACH) == 1


def test_rtn15c6_resume_resends_with_the_same_serials() -> None:
    h = Harness()
    h.establish()
    h.attach_now("chat")
    h.run(h.core.publish("chat", [Message("a")], "p0", h.now))
    h.run(h.core.publish("chat", [Message("b")], "p1", h.now))
    h.drop()
    effects = h.receive(connected_frame("conn-1", "key-1b"))
    assert [f.msg_serial for f in h.sent(effects) if f.action == Action.MESSAGE] == [0, 1]
    assert h.core.error_reason is None


def test_rtn15c5_token_error_during_resume_renews() -> None:
    h = Harness()
    h.establish()
    h.drop()
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401)))
    assert h.state == "connecting"
    assert of(RequestToken, h.last)


def test_rtn15c4_fatal_error_during_resume_fails() -> None:
    h = Harness()
    h.establish()
    h.drop()
    h.receive(ProtocolMessage(Action.ERROR, error=err(40101, 401)))
    assert h.state == "failed"


def test_rtn14h_attempts_from_suspended_still_resume() -> None:
    h = Harness(options(connection_state_ttl=1.0, disconnected_retry_timeout=0.5))
    h.establish(ttl=1.0)
    h.drop()
    h.drop()  # the immediate resume fails
    h.advance(1.0)
    assert h.state == "suspended"
    h.advance(30.0)
    assert h.opens()[-1].params["resume"] == "key-1"


def test_rtn24_connected_while_connected_is_an_update() -> None:
    h = Harness()
    h.establish()
    update_error = err(40000, 400, "details changed")
    h.receive(connected_frame("conn-1", "key-new", error=update_error, max_idle=5.0))
    change = h.conn_changes()[-1]
    assert (change.previous.value, change.current.value, change.event.value) == (
        "connected",
        "connected",
        "update",
    )
    assert change.reason == update_error
    assert h.core.key == "key-new"
    assert h.conn_events().count("connected") == 1
    assert h.core.next_deadline() == pytest.approx(15.0)  # 5 + 10 (RTN21, RTN23a)


def test_rtn22_server_auth_requests_a_token_and_sends_auth() -> None:
    h = Harness()
    h.establish()
    effects = h.receive(ProtocolMessage(Action.AUTH))
    assert of(RequestToken, effects) == [RequestToken(force=True)]
    effects = h.run(h.core.token_obtained("new-token", h.now))
    (frame,) = h.sent(effects)
    assert frame.action == Action.AUTH and frame.auth == {"accessToken": "new-token"}
    assert h.state == "connected"
    h.run(h.core.token_failed(err(40170, 401), h.now))  # RSA4c3: stays connected
    assert h.state == "connected" and h.core.error_reason == err(40170, 401)
    h.run(h.core.token_failed(err(40300, 403), h.now))  # RSA4d
    assert h.state == "failed"


def test_server_auth_ignored_unless_connected() -> None:
    h = Harness()
    h.connect()
    assert h.receive(ProtocolMessage(Action.AUTH)) == []


def test_rtc8b_new_token_while_connecting_restarts_the_attempt() -> None:
    h = Harness()
    h.connect()
    h.run(h.core.token_obtained("fresh", h.now))
    assert len(h.opens()) == 2 and h.opens()[-1].params["accessToken"] == "fresh"


def test_rtc8c_new_token_while_disconnected_connects() -> None:
    h = Harness()
    h.connect()
    h.drop()
    h.run(h.core.token_obtained("fresh", h.now))
    assert h.state == "connecting"
    h2 = Harness()
    h2.run(h2.core.token_obtained("stored", 0.0))  # INITIALIZED: stored only
    assert h2.state == "initialized"
    assert h2.opens(h2.connect())[0].params["accessToken"] == "stored"


def test_token_failed_when_not_waiting_is_ignored() -> None:
    h = Harness()
    h.connect()
    assert h.run(h.core.token_failed(err(40170, 401), 0.0)) == []


def test_token_fetch_timeout_disconnects() -> None:
    h = Harness(options(key=None, auth_url="https://auth", realtime_request_timeout=2.0))
    h.connect()
    h.advance(2.0)
    assert h.state == "disconnected"
    assert h.core.error_reason is not None and h.core.error_reason.code == 80019


def test_rtn23a_idle_timeout_drops_and_resumes() -> None:
    h = Harness(options(realtime_request_timeout=10.0))
    h.establish(max_idle=15.0)
    assert h.core.next_deadline() == pytest.approx(25.0)
    h.advance(20.0)
    h.receive(ProtocolMessage(Action.HEARTBEAT))  # any frame resets the timer
    assert h.core.next_deadline() == pytest.approx(45.0)
    h.run(h.core.activity(h.tid, 30.0))  # RTN23b: websocket ping
    assert h.core.next_deadline() == pytest.approx(55.0)
    h.advance(10.0)
    assert h.state == "connected"
    h.advance(25.0)
    assert h.conn_events()[-2:] == ["disconnected", "connecting"]
    assert h.opens()[-1].params["resume"] == "key-1"


def test_rtn23a_zero_max_idle_interval_means_no_idle_timer() -> None:
    h = Harness()
    h.establish(max_idle=0.0)
    assert h.core.next_deadline() is None


def test_rtn13_ping_round_trip_and_timeout() -> None:
    h = Harness(options(realtime_request_timeout=3.0))
    h.establish(max_idle=0.0)
    (send,) = h.run(h.core.ping("p1", h.now))
    assert isinstance(send, SendFrame) and send.frame.action == Action.HEARTBEAT
    ping_id = send.frame.id
    assert ping_id
    h.now = 1.5
    assert h.receive(ProtocolMessage(Action.HEARTBEAT, id="other")) == []
    (done,) = h.receive(ProtocolMessage(Action.HEARTBEAT, id=ping_id))
    assert done == CompletePing("p1", None, 1.5)
    h.run(h.core.ping("p2", h.now))
    assert h.core.next_deadline() == pytest.approx(4.5)
    (timeout,) = of(CompletePing, h.advance(3.0))
    assert timeout.handle == "p2" and timeout.error is not None


def test_rtn13d_ping_deferred_until_connected_and_rtn13b_errors() -> None:
    h = Harness()
    assert of(CompletePing, h.run(h.core.ping("early", 0.0)))[0].error is not None
    h.connect()
    assert h.run(h.core.ping("p", 0.0)) == []
    assert h.receive(ProtocolMessage(Action.HEARTBEAT, id="x")) == []
    effects = h.receive(connected_frame())
    heartbeats = [f for f in h.sent(effects) if f.action == Action.HEARTBEAT]
    assert len(heartbeats) == 1
    ping_id = heartbeats[0].id
    h.drop()  # the ping is re-sent after the resume
    effects = h.receive(connected_frame())
    assert [f.id for f in h.sent(effects) if f.action == Action.HEARTBEAT] == [ping_id]
    h.close()
    h.receive(ProtocolMessage(Action.CLOSED))
    assert [c.handle for c in of(CompletePing, h.last)] == ["p"]


def test_ping_deferred_and_ponged_before_connected_is_kept() -> None:
    h = Harness()
    h.connect()
    h.run(h.core.ping("p", 0.0))
    ping_id = next(iter(h.core.pings.pending))
    assert h.receive(ProtocolMessage(Action.HEARTBEAT, id=ping_id)) == []
    assert ping_id in h.core.pings.pending


def test_rtn16_recover_sets_serial_channels_and_param_once() -> None:
    key = json.dumps({"connectionKey": "rk", "msgSerial": 9, "channelSerials": {"chat": "s-1"}})
    h = Harness(options(recover=key))
    assert h.core.msg_serial == 9
    assert h.core.channels["chat"].channel_serial == "s-1"
    params = h.opens(h.connect())[0].params
    assert params["recover"] == "rk" and "resume" not in params
    h.receive(connected_frame("recovered", "k2"))
    assert h.core.msg_serial == 9  # RTN16f: recovery succeeded
    h.drop()
    params = h.opens()[-1].params
    assert "recover" not in params and params["resume"] == "k2"


def test_rtn16l_recover_failure_resets_serial() -> None:
    key = json.dumps({"connectionKey": "rk", "msgSerial": 9, "channelSerials": {}})
    h = Harness(options(recover=key))
    h.connect()
    h.receive(connected_frame("fresh", "k2", error=err(80018, 400)))
    assert h.core.msg_serial == 0


def test_rtn16f1_malformed_recover_connects_fresh() -> None:
    h = Harness(options(recover="{broken"))
    params = h.opens(h.connect())[0].params
    assert "recover" not in params
    error = h.core.recover_error  # the driver logs it (the core has no logger)
    assert error is not None and error.message == "invalid recovery key: not JSON"


def test_rtn16g_recovery_key() -> None:
    h = Harness()
    assert h.core.recovery_key() is None  # RTN16g2: no key yet
    h.establish()
    h.attach_now("chat", channel_serial="cs-1")
    h.attach("pending")
    h.core.queue.next_serial = 4
    assert json.loads(h.core.recovery_key() or "") == {
        "connectionKey": "key-1",
        "msgSerial": 4,
        "channelSerials": {"chat": "cs-1"},
    }
    h.close()
    assert h.core.recovery_key() is None


def fallback_harness() -> Harness:
    return Harness(options(fallback_hosts=["fb-a", "fb-b"]))


def test_rtn17i_primary_first_then_fallbacks_after_connectivity_check() -> None:
    h = fallback_harness()
    h.connect()
    assert h.opens()[0].host == "main.realtime.ably.net"
    effects = h.drop()
    assert of(CheckConnectivity, effects) and h.state == "connecting"
    assert h.run(h.core.connectivity_checked(True, h.now))
    first = h.opens()[-1].host
    h.drop()  # already checked: straight to the next fallback
    second = h.opens()[-1].host
    assert {first, second} == {"fb-a", "fb-b"}
    h.drop()
    assert h.state == "disconnected"
    h.advance(15.0)
    assert h.opens()[-1].host == "main.realtime.ably.net"  # RTN17i


def test_rtn17j_no_connectivity_means_disconnected() -> None:
    h = fallback_harness()
    h.connect()
    h.drop()
    h.run(h.core.connectivity_checked(False, h.now))
    assert h.state == "disconnected"
    assert h.run(h.core.connectivity_checked(True, h.now)) == []


def test_connectivity_check_timeout() -> None:
    h = fallback_harness()
    h.connect()
    h.drop()
    h.advance(10.0)
    assert h.state == "disconnected"


def test_rtn17f1_disconnected_5xx_uses_fallback_but_4xx_does_not() -> None:
    h = fallback_harness()
    h.connect()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(50300, 503)))
    assert of(CheckConnectivity, h.last)
    h = fallback_harness()
    h.connect()
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(40000, 400)))
    assert h.state == "disconnected"
    h = fallback_harness()
    h.connect()
    h.drop(err(40100, 401))  # a refused handshake is not a fallback reason
    assert h.state == "disconnected"


def test_rtn17_timeout_qualifies_for_fallback() -> None:
    h = fallback_harness()
    h.connect()
    h.advance(10.0)
    assert of(CheckConnectivity, h.last)


def test_rtn17g_no_fallbacks_means_disconnected_directly() -> None:
    h = Harness()
    h.connect()
    h.drop()
    assert h.state == "disconnected" and not of(CheckConnectivity, h.effects)


def test_stale_transport_input_is_ignored() -> None:
    h = Harness()
    h.establish()
    old = h.tid
    h.drop()
    assert h.run(h.core.frame_received(old, connected_frame("x"), 0.0)) == []
    assert h.run(h.core.transport_failed(old, None, 0.0)) == []
    assert h.run(h.core.activity(old, 0.0)) == []
    assert h.receive(ProtocolMessage(999)) == []  # RSF1: unknown action
    assert h.receive(ProtocolMessage(Action.MESSAGE, channel="nobody")) == []
    assert isinstance(h.opens()[-1], OpenTransport)
