"""Live batches (one inbox item per realtime frame) in the daemon.

Epochs, backfill holding, dedup against the backfill, back-pressure (the held
bound counts messages, not items) and splitting of frames larger than a chunk.
"""

from __future__ import annotations

from ably_bridge.bridge.tracks import Live
from ably_bridge.protocol.models import Message
from tests.bridge.daemon_fakes import ManualExecutor
from tests.bridge.test_daemon import Rig, make_rig


def stored(rig: Rig, channel: str, n: int) -> list[Message]:
    """Messages in the channel's history that were not delivered live (yet)."""
    out = []
    for i in range(n):
        rig.clock.advance(0.001)
        out.append(rig.source.publish(channel, "e", i, deliver=False))
    return out


def frame(rig: Rig, channel: str, n: int) -> list[str]:
    """Deliver ``n`` new messages as one batch, as the realtime source does per frame."""
    messages = stored(rig, channel, n)
    handlers = rig.source.channel(channel).handlers
    assert handlers is not None
    handlers.messages(messages)
    return [str(m.id) for m in messages]


def live_rig(executor: ManualExecutor | None = None) -> Rig:
    rig = make_rig(executor=executor)
    rig.daemon.start()
    rig.settle()
    if executor is not None:
        executor.run_all()
        rig.settle()
    return rig


def test_a_batch_is_one_inbox_item_delivered_in_order() -> None:
    rig = live_rig()
    inbox = rig.daemon.inbox
    sent = frame(rig, "ch1", 5)
    assert inbox.qsize() == 1
    sent += frame(rig, "ch1", 1) + frame(rig, "ch1", 3)
    rig.settle()
    assert rig.ids("ch1") == sent
    assert rig.daemon.metrics.received.value("message") == 9


def test_a_batch_larger_than_a_chunk_is_split_and_stays_in_order() -> None:
    rig = live_rig()  # buffer_size 50, one route: chunks of 12
    sent = frame(rig, "ch1", 30)
    rig.settle()
    assert rig.ids("ch1") == sent
    assert rig.daemon.tracks["ch1"].held_live == 0


def test_batches_wait_behind_the_backfill_and_duplicates_are_delivered_once() -> None:
    executor = ManualExecutor()
    rig = live_rig(executor)
    first = frame(rig, "ch1", 2)
    rig.settle()
    missed = [str(m.id) for m in rig.source.lose_continuity("ch1", missed=3)]
    rig.settle()
    track = rig.daemon.tracks["ch1"]
    assert track.phase == "backfilling"
    # A late frame mixing a message below the attach point (also in the gap)
    # with new ones, then another frame.
    gap_copy = rig.source.channel("ch1").history[-1]
    late_new = stored(rig, "ch1", 2)
    handlers = rig.source.channel("ch1").handlers
    assert handlers is not None
    handlers.messages([gap_copy, *late_new])
    held = frame(rig, "ch1", 2)
    rig.settle()
    assert track.held_live == 1 + 5  # the presence sync item, then 5 messages in 2 items
    assert rig.ids("ch1") == first
    executor.run_all()
    rig.settle()
    assert rig.ids("ch1") == first + missed + [str(m.id) for m in late_new] + held
    assert track.phase == "live" and track.held_live == 0 and not track.pending


def test_a_batch_of_an_abandoned_attachment_is_dropped() -> None:
    rig = live_rig()
    track = rig.daemon.tracks["ch1"]
    stale = stored(rig, "ch1", 3)
    rig.daemon.inbox.put(Live("ch1", track.epoch - 1, "messages", stale))
    rig.settle()
    assert rig.ids("ch1") == []
    fresh = frame(rig, "ch1", 2)
    rig.settle()
    assert rig.ids("ch1") == fresh


def test_held_batches_count_their_messages_towards_the_pause_bound() -> None:
    rig = live_rig()
    rig.sink.fail_with(ConnectionError("redis down"))
    track = rig.daemon.tracks["ch1"]
    sent: list[str] = []
    for _ in range(20):
        sent += frame(rig, "ch1", 10)
        rig.settle()
        if track.phase == "paused":
            break
    # buffer_size 50: paused once more than 50 *messages* are held, i.e. after
    # a handful of frames, not after 50 frames (500 messages).
    assert track.phase == "paused"
    assert len(sent) <= 150
    assert rig.daemon.metrics.pauses.value() == 1
    sent += [str(m.id) for m in stored(rig, "ch1", 4)]  # while paused (detached)
    rig.sink.recover()
    for _ in range(20):
        rig.clock.advance(2.0)
        rig.settle()
    assert track.phase == "live"
    assert rig.ids("ch1") == sent  # every message once, in order (history closes the gap)


def test_a_huge_frame_under_back_pressure_pauses_and_is_replayed_in_order() -> None:
    rig = live_rig()
    rig.sink.fail_with(ConnectionError("redis down"))
    sent = frame(rig, "ch1", 200)  # split in chunks; the held bound trips part-way
    rig.settle()
    track = rig.daemon.tracks["ch1"]
    assert track.phase == "paused"
    rig.sink.recover()
    for _ in range(30):
        rig.clock.advance(2.0)
        rig.settle()
    assert track.phase == "live"
    assert rig.ids("ch1") == sent


def test_a_step_budgets_events_not_items() -> None:
    from ably_bridge.bridge.daemon import DaemonOptions

    rig = make_rig(options=DaemonOptions(max_inbox_per_step=10))
    rig.daemon.start()
    rig.settle()
    sent = frame(rig, "ch1", 6) + frame(rig, "ch1", 6) + frame(rig, "ch1", 6)
    # The first two frames are joined (a chunk: 12 events) and use up the budget of 10:
    # the sinks go next. The third, taken from the inbox meanwhile, goes first next step.
    assert rig.daemon.step() == 1
    assert rig.ids("ch1") == sent[:12]
    assert rig.daemon.inbox.empty()
    assert rig.daemon.step() == 1
    assert rig.ids("ch1") == sent
    rig.settle()
    assert rig.ids("ch1") == sent


def test_frames_queued_back_to_back_are_submitted_together_in_order() -> None:
    rig = live_rig()  # chunks of 12
    calls: list[list[tuple[str, int]]] = []
    submit = rig.daemon.dispatcher.submit_frames

    def counting(frames: list[tuple[str, list[Message]]]) -> list[bool]:
        calls.append([(channel, len(messages)) for channel, messages in frames])
        return submit(frames)

    rig.daemon.dispatcher.submit_frames = counting  # type: ignore[method-assign]
    sent: dict[str, list[str]] = {"ch1": [], "ch2": []}
    for channel in ["ch1"] * 15 + ["ch2"] * 2 + ["ch1"] * 3:  # one message per frame
        sent[channel] += frame(rig, channel, 1)
    rig.settle()
    assert rig.ids("ch1") == sent["ch1"] and rig.ids("ch2") == sent["ch2"]
    # 15 frames of ch1: a chunk of 12 and the other 3; ch2's two; the last three of ch1;
    # all handed to the dispatcher in one call.
    assert calls == [[("ch1", 12), ("ch1", 3), ("ch2", 2), ("ch1", 3)]]


def test_frames_of_an_abandoned_attachment_are_not_joined_with_the_new_ones() -> None:
    rig = live_rig()
    track = rig.daemon.tracks["ch1"]
    old = frame(rig, "ch1", 1) + frame(rig, "ch1", 1)  # queued for the current epoch...
    inbox = rig.daemon.inbox
    stale = [inbox.get_nowait(), inbox.get_nowait()]
    track.epoch += 1  # ...then the attachment is abandoned (as a pause does)
    fresh = Live("ch1", track.epoch, "messages", stored(rig, "ch1", 2))
    for item in [*stale, fresh]:
        inbox.put(item)
    rig.settle()
    assert rig.ids("ch1") == [str(m.id) for m in fresh.payload]
    assert not set(old) & set(rig.ids("ch1"))
