"""The connection pool: placement, limits, idle connections, states, and the rate budget.

Each pooled connection is a FakeSource; time is a FakeClock. No sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ably_bridge.bridge.connections import CapacityError, ConnectionPool, PoolOptions
from ably_bridge.bridge.source import FakeSource, SourceHandlers, StateChange
from ably_bridge.clock import FakeClock
from ably_bridge.protocol.models import Message


class Recorder:
    """The daemon's side: what reached the handlers of one channel."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.states: list[StateChange] = []

    def handlers(self) -> SourceHandlers:
        def messages(batch: Sequence[Message]) -> None:
            self.messages.extend(m.data for m in batch)

        return SourceHandlers(messages, lambda _p: None, lambda _p: None, self.states.append)


def make_pool(**options: Any) -> tuple[ConnectionPool, list[FakeSource], FakeClock]:
    clock = FakeClock()
    sources: list[FakeSource] = []

    def factory(_n: int) -> FakeSource:
        sources.append(FakeSource())
        return sources[-1]

    return ConnectionPool(factory, PoolOptions(**options), clock=clock), sources, clock


def test_channels_fill_a_connection_before_the_next_opens() -> None:
    pool, sources, _ = make_pool(channels_per_connection=3)
    assert len(sources) == 1  # the first connection opens at once
    for i in range(7):
        pool.attach(f"c{i}", Recorder().handlers())
    assert pool.connection_count() == 3
    assert pool.placement() == {f"c{i}": i // 3 for i in range(7)}
    assert [s.attached() for s in sources] == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6"]]


def test_a_reattach_stays_on_its_connection_with_the_new_handlers() -> None:
    pool, sources, _ = make_pool(channels_per_connection=2)
    for i in range(4):
        pool.attach(f"c{i}", Recorder().handlers())
    newer = Recorder()
    pool.attach("c3", newer.handlers())
    assert pool.placement()["c3"] == 1
    sources[1].publish("c3", "e", "hello")
    assert newer.messages == ["hello"]


def test_an_emptied_connection_is_closed_but_not_the_first() -> None:
    pool, sources, _ = make_pool(channels_per_connection=1)
    pool.attach("a", Recorder().handlers())
    pool.attach("b", Recorder().handlers())
    pool.detach("b")
    pool.detach("a")
    assert pool.connection_count() == 1
    import time

    deadline = time.monotonic() + 5
    while not sources[1].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sources[1].closed and not sources[0].closed
    pool.attach("c", Recorder().handlers())
    assert pool.placement() == {"c": 0}


def test_max_connections_bounds_the_pool() -> None:
    pool, _, _ = make_pool(channels_per_connection=2, max_connections=2)
    for i in range(4):
        pool.attach(f"c{i}", Recorder().handlers())
    with pytest.raises(CapacityError):
        pool.attach("c4", Recorder().handlers())


def test_the_pool_reports_its_worst_connection_state() -> None:
    pool, sources, _ = make_pool(channels_per_connection=1)
    pool.attach("a", Recorder().handlers())
    pool.attach("b", Recorder().handlers())
    assert pool.connection_state() == "connected"
    sources[1].state = "disconnected"
    assert pool.connection_state() == "disconnected"
    assert pool.connection_states() == ["connected", "disconnected"]
    pool.close()
    assert all(s.closed for s in sources)


def test_a_busy_connection_sheds_its_hottest_channel() -> None:
    pool, sources, clock = make_pool(channels_per_connection=10, message_rate_budget=50)
    recorders = {n: Recorder() for n in ("hot", "warm", "cold")}
    for name, rec in recorders.items():
        pool.attach(name, rec.handlers())
    for i in range(300):
        sources[0].publish("hot", "e", i)
    for i in range(100):
        sources[0].publish("warm", "e", i)
    clock.advance(5.0)  # hot 60/s, warm 20/s: 80/s on a 50/s budget
    assert pool.maintain() == 1
    assert pool.placement() == {"hot": 1, "warm": 0, "cold": 0}
    assert "hot" in sources[0].detached and sources[1].attached() == ["hot"]
    # The same handlers now get the new attachment: ATTACHED without continuity,
    # which makes the daemon backfill from its checkpoint.
    last = recorders["hot"].states[-1]
    assert last.current == "attached" and last.continuity_lost
    sources[1].publish("hot", "e", "after")
    assert recorders["hot"].messages[-1] == "after"
    clock.advance(5.0)
    assert pool.maintain() == 0  # nothing over budget any more
    rates = pool.rates()
    assert rates[0] < 50 and pool.moves == 1


def test_a_known_busy_channel_is_placed_where_its_rate_fits() -> None:
    pool, sources, clock = make_pool(channels_per_connection=10, message_rate_budget=50)
    pool.attach("hot", Recorder().handlers())
    for i in range(200):
        sources[0].publish("hot", "e", i)
    clock.advance(2.0)
    pool.maintain()  # hot: 50/s
    pool.detach("hot")
    pool.attach("other", Recorder().handlers())
    for i in range(100):
        sources[0].publish("other", "e", i)
    clock.advance(2.0)
    pool.maintain()  # other: 25/s on connection 0
    pool.attach("hot", Recorder().handlers())  # remembered 50/s: does not fit beside "other"
    assert pool.placement() == {"other": 0, "hot": 1}
