"""The delivery ledger (core/ledger.py): settling, how far checkpoints move, pure."""

from __future__ import annotations

from dataclasses import dataclass

from ably_bridge.bridge.core.ledger import DeliveryLedger, Entry
from ably_bridge.bridge.core.position import Position, presence_track


@dataclass
class Env:
    channel: str
    timestamp: int


def entry(ts: int, targets: int = 2, *, track: str = "r", fence: str | None = None) -> Entry:  # type: ignore[type-arg]
    return Entry(Env("ch", ts), Position(ts, f"id{ts}"), targets, track, fence=fence)


def test_a_checkpoint_moves_over_the_contiguous_settled_run_only() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    a, b, c = entry(1), entry(2), entry(3)
    ledger.record("ch", [a, b, c])
    touched: set[tuple[str, str]] = set()
    ledger.target_done(b, touched)
    ledger.target_done(b, touched)  # b settled, but a is still out
    assert touched == {("r", "ch")}
    ledger.advance(touched, lambda: 1)
    assert ledger.unsaved == {} and ledger.unsettled_channels() == {"ch"}
    touched.clear()
    ledger.target_done(a, touched)
    assert not touched  # one of two targets: not settled
    ledger.target_done(a, touched)
    ledger.advance(touched, lambda: 7)
    assert ledger.unsaved == {"r": {"ch": b.position}}  # over a and b, not c
    assert ledger.last_settled == {("r", "ch"): (b.position, 7)}
    assert ledger.backlog() == {("r", "ch"): (1, 3)}
    assert ledger.take_finished() == [b.envelope, a.envelope] and ledger.finished == []


def test_an_event_without_targets_settles_at_once_and_tracks_stay_apart() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    msg, pres = entry(1, 0), entry(2, 0, track=presence_track("r"))
    ledger.record("ch", [msg, pres])
    assert msg.done and pres.done and ledger.finished == [msg.envelope, pres.envelope]
    ledger.advance([("r", "ch"), (presence_track("r"), "ch")], lambda: 1)
    assert ledger.unsaved == {"r": {"ch": msg.position}, presence_track("r"): {"ch": pres.position}}
    assert ledger.saved("r") == 1 and ledger.saved("r") == 0
    assert ledger.unsettled_channels() == {"ch"}  # the presence position is still unsaved


def test_a_fenced_event_settles_but_never_reaches_a_checkpoint_or_the_dedup_window() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    ok, fenced = entry(1, 1, fence="t1"), entry(2, 1, fence="t1")
    ledger.record("ch", [ok, fenced])
    touched: set[tuple[str, str]] = set()
    ledger.target_done(ok, touched)
    fenced.fenced = True
    ledger.target_done(fenced, touched)
    ledger.advance(touched, lambda: 1)
    assert ledger.unsaved == {"r": {"ch": ok.position}}  # stops before the fenced one
    assert ledger.finished == [ok.envelope]
    assert ledger.take_fences("r", ["ch"]) == {"ch": "t1"}
    assert ledger.take_fences("r", ["ch"]) == {}  # taken
    ledger.save_failed("r", {"ch": "t1"})
    assert ledger.unsaved_fences == {("r", "ch"): "t1"}


def test_lifecycle_events_settle_without_moving_a_checkpoint() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    life: Entry = Entry(Env("ch", 1), None, 1, "r")  # type: ignore[type-arg]
    ledger.record("ch", [life])
    touched: set[tuple[str, str]] = set()
    ledger.target_done(life, touched)
    ledger.advance(touched, lambda: 1)
    assert ledger.unsaved == {} and ledger.unsettled_channels() == set()


def test_forget_drops_queued_entries_positions_and_fences_of_those_channels() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    a = entry(1, 1, fence="t")
    other: Entry = Entry(Env("keep", 2), Position(2), 1, "r")  # type: ignore[type-arg]
    ledger.record("ch", [a])
    ledger.record("keep", [other, Entry(Env("keep", 3), Position(3), 1, "r")])
    touched: set[tuple[str, str]] = set()
    ledger.target_done(a, touched)
    ledger.target_done(other, touched)
    ledger.advance(touched, lambda: 1)
    ledger.record("ch", [entry(4)])
    ledger.forget({"ch"})
    assert ledger.unsaved == {"r": {"keep": other.position}}
    assert ledger.unsaved_fences == {} and set(ledger.last_settled) == {("r", "keep")}
    assert set(ledger.backlog()) == {("r", "keep")}


def test_checkpoint_lag_counts_from_the_oldest_unsettled_event() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger()
    assert ledger.checkpoint_lag(10_000) == 0.0
    ledger.record("ch", [entry(4_000), entry(6_000)])
    assert ledger.checkpoint_lag(10_000) == 6.0
    assert ledger.checkpoint_lag(3_000) == 0.0  # (clock behind the event: never negative)
    unstamped: DeliveryLedger[Env, str] = DeliveryLedger()
    unstamped.record("ch", [entry(0)])
    assert unstamped.checkpoint_lag(10_000) == 0.0


def test_last_settled_is_bounded_dropping_the_oldest_pairs() -> None:
    ledger: DeliveryLedger[Env, str] = DeliveryLedger(last_settled_max=4)
    for i in range(5):
        e: Entry = Entry(Env(f"c{i}", i + 1), Position(i + 1), 0, "r")  # type: ignore[type-arg]
        ledger.record(f"c{i}", [e])
        ledger.advance([("r", f"c{i}")], lambda: 1)
    assert list(ledger.last_settled) == [("r", "c3"), ("r", "c4")]
