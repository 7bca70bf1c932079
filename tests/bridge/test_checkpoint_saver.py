"""CheckpointSaver: when the ledger's positions are written, and what a failing store costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ably_bridge.bridge.checkpoint_saver import SAVE_RETRY, CheckpointSaver
from ably_bridge.bridge.core.ledger import DeliveryLedger, Entry
from ably_bridge.bridge.core.position import Position
from ably_bridge.clock import FakeClock


@dataclass
class Env:
    channel: str
    timestamp: int


class Store:
    """Records every save; ``down`` makes saves raise as a store outage would."""

    def __init__(self) -> None:
        self.saves: list[tuple[str, dict[str, Position], Any]] = []
        self.down = False

    def advance_many(
        self, track: str, positions: Mapping[str, Position], fences: Any = None
    ) -> None:
        if self.down:
            raise ConnectionError("store down")
        self.saves.append((track, dict(positions), fences))


def _settle(ledger: DeliveryLedger[Env, int], n: int, *, fence: int | None = None) -> set[Any]:
    """Accept and settle event ``n`` of channel c on track r; the touched keys."""
    entry: Entry[Env, int] = Entry(Env("c", n), Position(n, f"id{n}"), 1, "r", fence=fence)
    ledger.record("c", [entry])
    touched: set[Any] = set()
    ledger.target_done(entry, touched)
    return touched


def _saver(
    interval: float = 0.0,
) -> tuple[CheckpointSaver, DeliveryLedger[Env, int], Store, FakeClock]:
    ledger: DeliveryLedger[Env, int] = DeliveryLedger()
    store, clock = Store(), FakeClock()
    return CheckpointSaver(store, ledger, clock, interval), ledger, store, clock  # type: ignore[arg-type]


def test_without_an_interval_every_advance_saves_what_settled() -> None:
    saver, ledger, store, _ = _saver()
    assert saver.advance(_settle(ledger, 1)) == 1
    assert saver.advance(_settle(ledger, 2)) == 1
    assert [s[1]["c"].id for s in store.saves] == ["id1", "id2"]
    assert saver.seconds_until_due() is None


def test_an_interval_spaces_the_saves_and_a_forced_save_goes_at_once() -> None:
    saver, ledger, store, clock = _saver(interval=1.0)
    assert saver.advance(_settle(ledger, 1)) == 1  # the first save is not held back
    assert saver.advance(_settle(ledger, 2)) == 0
    assert saver.seconds_until_due() == pytest.approx(1.0)
    clock.advance(0.4)
    assert saver.seconds_until_due() == pytest.approx(0.6)
    assert saver.advance(_settle(ledger, 3)) == 0
    clock.advance(0.6)
    assert saver.advance(()) == 1
    assert [s[1]["c"].id for s in store.saves] == ["id1", "id3"]  # only the furthest
    assert saver.advance(_settle(ledger, 4)) == 0
    assert saver.advance((), force=True) == 1
    assert store.saves[-1][1]["c"].id == "id4"


def test_a_failed_save_keeps_its_position_and_is_tried_again_later() -> None:
    saver, ledger, store, clock = _saver()
    store.down = True
    assert saver.advance(_settle(ledger, 1, fence=7)) == 0
    assert saver.seconds_until_due() == pytest.approx(SAVE_RETRY)
    assert saver.advance(()) == 0  # not due yet: nothing is tried
    store.down = False
    clock.advance(SAVE_RETRY)
    assert saver.advance(()) == 1
    assert store.saves == [("r", {"c": Position(1, "id1")}, {"c": 7})]  # its fence kept
    assert saver.seconds_until_due() is None


def test_without_a_store_nothing_is_kept_unsaved() -> None:
    ledger: DeliveryLedger[Env, int] = DeliveryLedger()
    saver = CheckpointSaver(None, ledger, FakeClock())
    assert saver.advance(_settle(ledger, 1)) == 0
    assert not ledger.unsaved and saver.seconds_until_due() is None
