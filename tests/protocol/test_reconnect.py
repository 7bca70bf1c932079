"""No reconnect storm: every path into DISCONNECTED backs off (RTN14d, RTN15a, RTB1).

Each test scripts a misbehaving server against the sans-I/O core and drives
simulated time from one deadline to the next, recording when connection
attempts (``OpenTransport``) happen. With ``FixedRandom(1.0)`` (jitter 1) and
the default ``disconnected_retry_timeout`` of 15 s the RTB1 delays are
15, 20, 25, 30, 30... s, so the attempt times are exact. Before the fix, a
server that answered CONNECTED and then dropped the socket got a new attempt
at once, every time (6,574 in 20 s against a real socket); the simulator's
attempt cap turns such a loop into a failure instead of a hang.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ably_bridge.errors import ErrorCode
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import CheckConnectivity, OpenTransport, RequestToken
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.protocol.reconnect import ReconnectBackoff
from ably_bridge.protocol.retry import RetryPolicy

from .harness import FixedRandom, Harness, connected_frame, err, of, options

Server = Callable[[Harness], None]
MAX_ATTEMPTS = 50  # far more than any backoff allows in the simulated window


def simulate(h: Harness, server: Server, until: float) -> list[float]:
    """Connect, answer every attempt with ``server``, and run to ``until``; attempt times."""
    attempts: list[float] = []
    h.connect()
    while len(attempts) < MAX_ATTEMPTS:
        last = h.last
        if of(OpenTransport, last):
            attempts.append(h.now)
            server(h)
        elif of(RequestToken, last):
            h.run(h.core.token_obtained(f"token-{len(attempts)}", h.now))
        elif of(CheckConnectivity, last):
            h.run(h.core.connectivity_checked(True, h.now))
        else:
            deadline = h.core.next_deadline()
            if deadline is None or deadline > until:
                return attempts
            h.advance(deadline - h.now)
    raise AssertionError(f"reconnect storm: {len(attempts)} attempts by t={h.now:g}s")


def refuse(h: Harness) -> None:
    h.drop(err(ErrorCode.CONNECTION_FAILED, 503, "connection refused"))


def close_before_connected(h: Harness) -> None:
    h.run(h.core.transport_opened(h.tid, h.now))
    h.drop()


def connected_then_closed(h: Harness) -> None:
    h.receive(connected_frame())
    h.drop()


def connected_then_disconnected_frame(h: Harness) -> None:
    h.receive(connected_frame())
    h.receive(ProtocolMessage(Action.DISCONNECTED, error=err(80003, 503, "go away")))


def connected_then_token_error(h: Harness) -> None:
    h.receive(connected_frame())
    h.receive(ProtocolMessage(Action.ERROR, error=err(40142, 401, "Token expired")))


def connected_then_silent(h: Harness) -> None:
    h.receive(connected_frame(max_idle=15.0))  # idle limit 15 + 10 s (RTN23a)


BACKOFF = [0.0, 15.0, 35.0, 60.0, 90.0]  # each attempt fails; RTB1 delays 15, 20, 25, 30


def test_connection_refused_backs_off() -> None:
    h = Harness()
    assert simulate(h, refuse, 100.0) == BACKOFF
    assert h.state == "disconnected"
    assert [c.retry_in for c in h.conn_changes() if c.current.value == "disconnected"] == [
        15.0,
        20.0,
        25.0,
        30.0,
        30.0,
    ]


def test_closed_before_connected_backs_off() -> None:
    assert simulate(Harness(), close_before_connected, 100.0) == BACKOFF


def test_closed_before_connected_tries_each_fallback_once_per_round() -> None:
    h = Harness(options(fallback_hosts=["a.example", "b.example"]))
    attempts = simulate(h, close_before_connected, 40.0)
    assert attempts == [0.0] * 3 + [15.0] * 3 + [35.0] * 3  # primary + 2 fallbacks per round


@pytest.mark.parametrize(
    "server", [connected_then_closed, connected_then_disconnected_frame], ids=["close", "frame"]
)
def test_dropped_right_after_connected_retries_at_once_only_once(server: Server) -> None:
    h = Harness()
    assert simulate(h, server, 100.0) == [0.0, 0.0, *BACKOFF[1:]]
    changes = [c for c in h.conn_changes() if c.current.value == "disconnected"]
    assert [c.retry_in for c in changes] == [0.0, 15.0, 20.0, 25.0, 30.0, 30.0]


def test_token_error_right_after_connected_backs_off_and_renews_each_time() -> None:
    h = Harness(options(key=None, auth_callback=lambda _p: "unused"))
    assert simulate(h, connected_then_token_error, 100.0) == [0.0, 0.0, *BACKOFF[1:]]
    forced = [r.force for r in of(RequestToken, h.effects)]
    assert forced == [False] + [True] * 5  # a refused token is never offered again
    assert h.state == "disconnected"


def test_non_token_error_frame_fails_without_retrying() -> None:
    def connected_then_error(h: Harness) -> None:
        h.receive(connected_frame())
        h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500, "boom")))

    h = Harness()
    assert simulate(h, connected_then_error, 100.0) == [0.0]
    assert h.state == "failed"  # RTN15i: no retry until connect() is called


def test_heartbeat_timeout_of_a_silent_server_backs_off() -> None:
    h = Harness()
    attempts = simulate(h, connected_then_silent, 120.0)
    # idle 25 s each time: lost at 25 (quick retry), at 50 (+15), at 90 (+20)
    assert attempts == [0.0, 25.0, 65.0, 110.0]
    reasons = [c.reason for c in h.conn_changes() if c.current.value == "disconnected"]
    assert all(r is not None and "no activity" in r.message for r in reasons)


def test_a_stable_connection_earns_the_quick_retry_back() -> None:
    h = Harness()
    h.connect()
    for _ in range(3):  # flapping: quick retry once, then backoff grows
        h.receive(connected_frame())
        h.drop()
        deadline = h.core.next_deadline()
        if h.state == "disconnected":
            assert deadline is not None
            h.advance(deadline - h.now)
    assert [c.retry_in for c in h.conn_changes() if c.current.value == "disconnected"] == [
        0.0,
        15.0,
        20.0,
    ]
    h.receive(connected_frame())
    for _ in range(4):  # alive for 20 s: heartbeats every 5 s
        h.advance(5.0)
        h.run(h.core.activity(h.tid, h.now))
    h.drop()
    assert h.state == "connecting"  # at once again (RTN15a)
    h.drop()
    assert h.conn_changes()[-1].retry_in == 15.0  # and the count started again


def test_connect_after_failed_starts_the_count_again() -> None:
    h = Harness()
    simulate(h, connected_then_closed, 20.0)  # the quick retry is spent
    h.connect()  # RTN11c: no wait, but the count goes on
    connected_then_closed(h)
    assert h.state == "disconnected"
    h.connect()
    h.receive(connected_frame())
    h.receive(ProtocolMessage(Action.ERROR, error=err(50000, 500, "boom")))
    assert h.state == "failed"
    h.connect()
    connected_then_closed(h)
    assert h.state == "connecting"  # the quick retry is available again


def test_reconnect_backoff_is_plain_state() -> None:
    backoff = ReconnectBackoff(RetryPolicy(2.0), stable_after=5.0)
    assert backoff.lost(0.0) is True
    assert backoff.lost(0.0) is False
    assert [backoff.next_delay(1.0), backoff.next_delay(0.0)] == [2.0, 2.0 * 4 / 3 * 0.8]
    backoff.connected(10.0)
    assert backoff.lost(14.0) is False  # alive 4 s < 5 s: not stable
    backoff.connected(20.0)
    assert backoff.lost(25.0) is True  # alive 5 s: stable, quick retry again
    assert backoff.attempt == 0
    assert "attempt=0" in repr(backoff)


@pytest.mark.parametrize(("sample", "wait"), [(1.0, 15.0), (0.0, 12.0)])
def test_a_forgotten_connection_dropped_again_waits_one_rtb1_delay_at_most(
    sample: float, wait: float
) -> None:
    """Forget-then-drop, the chaos run's fault: the loss of a stable connection is
    retried at once (RTN15a, RTN15h3); the server no longer knows it, so the resume
    fails and a new connection comes up (RTN15c7); when that one is lost again before
    it was stable, the wait is the first RTB1 delay, disconnected_retry_timeout times
    the jitter (0.8-1.0): 12-15 s with the default 15 s, never more (RTN14d, RTB1)."""
    h = Harness(rng=FixedRandom(sample))
    h.establish("conn-1", "key-1")
    for _ in range(4):  # alive for 20 s: stable
        h.advance(5.0)
        h.run(h.core.activity(h.tid, h.now))
    h.drop()  # forgotten by the server
    assert h.state == "connecting" and h.conn_changes()[-2].retry_in == 0.0
    resumes = of(OpenTransport, h.last)
    assert resumes and resumes[-1].params.get("resume") == "key-1"  # RTN15b
    h.receive(connected_frame("conn-2", "key-2", error=err(80008, 400, "unable to recover")))
    assert h.state == "connected"
    h.advance(0.5)
    h.drop()  # dropped 0.5 s later
    assert h.state == "disconnected"
    assert h.conn_changes()[-1].retry_in == pytest.approx(wait)
    deadline = h.core.next_deadline()
    assert deadline is not None and deadline - h.now == pytest.approx(wait)
    h.advance(deadline - h.now)
    assert h.state == "connecting"
    assert of(OpenTransport, h.last)[-1].params.get("resume") == "key-2"  # resumes the new one
