"""Clock seam: the FakeClock that tests advance by hand, and the system clock."""

from __future__ import annotations

import threading

import pytest

from ably_bridge.clock import Clock, FakeClock, SystemClock


def test_fake_clock_advances_both_readings() -> None:
    clock = FakeClock(start=100.0, monotonic_start=5.0)
    clock.advance(2.5)
    assert clock.monotonic() == 7.5
    assert clock.time() == 102.5
    assert clock.time_ms() == 102_500


def test_timers_fire_in_due_order_with_time_at_their_due_point() -> None:
    clock = FakeClock(monotonic_start=0.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(3, lambda: seen.append(("c", clock.monotonic())))
    clock.call_later(1, lambda: seen.append(("a", clock.monotonic())))
    clock.call_later(1, lambda: seen.append(("b", clock.monotonic())))
    clock.advance(2)
    assert seen == [("a", 1.0), ("b", 1.0)]
    assert clock.pending == [3.0]
    clock.advance(5)
    assert seen[-1] == ("c", 3.0)
    assert clock.monotonic() == 7.0


def test_cancelled_timer_never_fires() -> None:
    clock = FakeClock()
    fired: list[int] = []
    timer = clock.call_later(1, lambda: fired.append(1))
    timer.cancel()
    clock.advance(10)
    assert fired == []
    assert clock.pending == []


def test_timer_scheduled_by_a_timer_fires_within_the_same_advance() -> None:
    clock = FakeClock(monotonic_start=0.0)
    fired: list[float] = []
    clock.call_later(1, lambda: clock.call_later(1, lambda: fired.append(clock.monotonic())))
    clock.advance(5)
    assert fired == [2.0]


def test_sleep_advances_instead_of_blocking() -> None:
    clock = FakeClock(monotonic_start=0.0)
    clock.sleep(30)
    clock.sleep(-1)
    assert clock.monotonic() == 30.0


def test_wall_time_can_jump_without_moving_monotonic() -> None:
    clock = FakeClock(start=10.0, monotonic_start=0.0)
    clock.set_wall_time(1000.0)
    assert clock.time() == 1000.0 and clock.monotonic() == 0.0


def test_negative_advance_is_refused() -> None:
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(FakeClock(), Clock)
    assert isinstance(SystemClock(), Clock)
    assert "pending=0" in repr(FakeClock())


def test_system_clock_timer_runs_on_another_thread() -> None:
    clock = SystemClock()
    done = threading.Event()
    where: list[str] = []

    def mark() -> None:
        where.append(threading.current_thread().name)
        done.set()

    clock.call_later(0, mark)
    assert done.wait(5)
    assert where and where[0] != threading.current_thread().name
    before = clock.monotonic()
    clock.sleep(0)
    assert clock.monotonic() >= before
    assert abs(clock.time_ms() - clock.time() * 1000) < 1000
    assert repr(clock) == "SystemClock()"
