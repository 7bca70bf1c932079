"""The channel lifecycle transition table (core/lifecycle.py): every rule, pure."""

from __future__ import annotations

import pytest

from ably_bridge.bridge.core import lifecycle as lc
from ably_bridge.bridge.core.lifecycle import View, decide

HOLDING = ("attaching", "backfilling", "live")


def moves(view: View, event: lc.Input) -> tuple[str, tuple[lc.Effect, ...]] | None:
    decision = decide(view, event)
    return None if decision is None else (decision.phase, decision.effects)


@pytest.mark.parametrize("phase", [*HOLDING, "paused", "failed"])
def test_an_attach_request_always_makes_a_new_attachment(phase: str) -> None:
    assert moves(View(phase), lc.AttachRequested()) == ("attaching", (lc.NewAttachment(),))


def test_a_fresh_attach_point_is_backfilled_and_a_lost_continuity_is_counted() -> None:
    first = lc.SourceAttached(resumed=False, attach_serial="s1")
    assert moves(View("attaching"), first) == ("backfilling", (lc.Backfill("s1"),))
    again = lc.SourceAttached(resumed=False, attach_serial="s2")
    assert moves(View("live", live_once=True, attach_serial="s1"), again) == (
        "backfilling", (lc.CountContinuityLoss(), lc.Backfill("s2")),
    )  # fmt: skip
    assert moves(View("backfilling", attach_serial="s1"), again) == (
        "backfilling", (lc.CountContinuityLoss(), lc.Backfill("s2")),
    )  # fmt: skip
    assert moves(View("failed"), first) == ("backfilling", (lc.Backfill("s1"),))


def test_what_keeps_continuity_changes_nothing() -> None:
    resumed = lc.SourceAttached(resumed=True, attach_serial="s9")
    assert moves(View("live", live_once=True), resumed) is None  # RTL12
    same = lc.SourceAttached(resumed=False, attach_serial="s1")
    assert moves(View("live", live_once=True, attach_serial="s1"), same) is None
    assert moves(View("backfilling", attach_serial="s1"), same) is None
    # Re-attached with continuity after SUSPENDED: live again, nothing to read.
    assert moves(View("attaching", live_once=True), resumed) == ("live", (lc.GoLive(),))
    # ...but a first attachment that never went live still backfills.
    assert moves(View("attaching"), resumed) == ("backfilling", (lc.Backfill("s9"),))


@pytest.mark.parametrize("phase", HOLDING)
def test_source_state_changes_of_a_holding_channel(phase: str) -> None:
    view = View(phase, live_once=True)
    assert moves(view, lc.SourceSuspended()) == ("attaching", (lc.InvalidateBackfill(),))
    assert moves(view, lc.SourceDetached()) == (
        "attaching", (lc.InvalidateBackfill(), lc.RetryLater("reattach")),
    )  # fmt: skip
    assert moves(view, lc.SourceFailed()) == (
        "failed", (lc.DropHeld(), lc.RetryLater("reattach")),
    )  # fmt: skip
    assert moves(view, lc.Overflow()) == ("paused", (lc.DropHeld(), lc.Detach()))
    assert moves(view, lc.Stopping()) == ("stopped", (lc.DropHeld(),))
    assert moves(view, lc.AttachFailed()) == ("failed", (lc.RetryLater("reattach"),))


def test_backfill_outcomes_and_timers() -> None:
    view = View("backfilling", attach_serial="s3")
    assert moves(view, lc.BackfillSucceeded()) == ("live", (lc.GoLive(),))
    assert moves(view, lc.BackfillFailed()) == ("backfilling", (lc.RetryLater("backfill"),))
    assert moves(view, lc.RetryDue()) == ("backfilling", (lc.Backfill("s3"),))
    assert moves(View("attaching"), lc.RetryDue()) == ("attaching", (lc.NewAttachment(),))
    assert moves(View("failed"), lc.RetryDue()) == ("attaching", (lc.NewAttachment(),))
    # A backfill result that comes late (the channel moved on) changes nothing.
    for phase in ("attaching", "live", "paused", "failed", "stopped"):
        assert moves(View(phase), lc.BackfillSucceeded()) is None
        assert moves(View(phase), lc.BackfillFailed()) is None


def test_paused_and_stopped_channels_ignore_the_source() -> None:
    for event in (
        lc.SourceAttached(resumed=False, attach_serial="x"), lc.SourceSuspended(),
        lc.SourceDetached(), lc.SourceFailed(), lc.Overflow(), lc.RetryDue(),
    ):  # fmt: skip
        assert moves(View("paused"), event) is None
    for event in (lc.AttachRequested(), lc.SourceFailed(), lc.Stopping(), lc.RetryDue()):
        assert moves(View("stopped"), event) is None
    assert moves(View("paused"), lc.Stopping()) == ("stopped", (lc.DropHeld(),))


def test_every_table_entry_names_a_known_phase_and_input() -> None:
    inputs = {
        lc.AttachRequested, lc.AttachFailed, lc.SourceAttached, lc.SourceSuspended,
        lc.SourceDetached, lc.SourceFailed, lc.BackfillSucceeded, lc.BackfillFailed,
        lc.RetryDue, lc.Overflow, lc.Stopping,
    }  # fmt: skip
    for phase, event in lc.TABLE:
        assert phase in lc.PHASES and event in inputs
    assert not any(phase == "stopped" for phase, _ in lc.TABLE)
