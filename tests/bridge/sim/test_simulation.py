"""The deterministic simulation: thousands of seeded runs through overlapping faults.

``SIM_SEEDS`` (default 2,000) seeds run here; ``make simulate SEEDS=N`` runs
more from the command line. A failing seed is named with a one-line
reproduction (``python -m tests.bridge.sim --seed N --verbose``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ably_bridge.bridge.core import ledger, start_points
from tests.bridge.sim.__main__ import repro
from tests.bridge.sim.scenario import run_seed

SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))


# About 60 s of CPU for 2,000 seeds; on a loaded 2-core box that is ~2 minutes of wall time,
# the suite's default timeout.
@pytest.mark.timeout(360)
def test_every_seed_loses_nothing_duplicates_nothing_and_keeps_order() -> None:
    failures = []
    totals = {"crashes": 0, "published": 0, "presence": 0, "advances": 0}
    for seed in range(SEEDS):
        outcome = run_seed(seed)
        for key in totals:
            totals[key] += outcome.stats.get(key, 0)
        if not outcome.ok:
            failures.append(f"seed {seed}: {outcome.violations[0]} | repro: {repro(seed)}")
    assert not failures, f"{len(failures)} of {SEEDS} seeds failed:\n" + "\n".join(failures[:20])
    # The runs did what they are for: many crashes, events and checkpoint moves.
    assert totals["crashes"] > SEEDS and totals["presence"] > SEEDS
    assert totals["advances"] > 10 * SEEDS


def test_a_run_replays_exactly_from_its_seed() -> None:
    first, again = run_seed(7), run_seed(7)
    assert first.stats == again.stats and first.violations == again.violations


@contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def failing_seeds(count: int = 40) -> list[str]:
    return [v for seed in range(count) for v in run_seed(seed).violations[:1]]


def test_the_checker_catches_a_checkpoint_that_passes_an_unconfirmed_event() -> None:
    original = ledger.DeliveryLedger.target_done

    def settle_at_once(self: ledger.DeliveryLedger, event: ledger.Entry, touched: set) -> None:  # type: ignore[type-arg]
        event.remaining = 1  # one target's word settles it
        original(self, event, touched)

    with patched(ledger.DeliveryLedger, "target_done", settle_at_once):
        found = failing_seeds()
    assert any("past" in v and "not confirmed" in v for v in found), found


def test_the_checker_catches_a_start_point_recomputed_on_retry() -> None:
    """Issue 16's bug, put back: the start point is decided again on every look."""
    original = start_points.StartPoints.see

    def again(
        self: start_points.StartPoints, channel: str, now_ms: int, lookback_s: float = 0.0
    ) -> start_points.StartPoint:
        self._points.pop(channel, None)
        return original(self, channel, now_ms, lookback_s)

    with patched(start_points.StartPoints, "see", again):
        found = failing_seeds()
    assert found, "recomputed start points went unnoticed"


@pytest.mark.parametrize("seed", [0, 1])
def test_a_seed_runs_from_the_command_line(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.bridge.sim.__main__ import main

    assert main(["--seed", str(seed), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert f"seed {seed}: " in out and "1 seed(s), 0 failed" in out
