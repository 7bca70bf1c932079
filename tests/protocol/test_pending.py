"""msgSerial, ACK/NACK ranges, resend and renumbering (RTN7, RTN19a, RTN15c7)."""

from __future__ import annotations

from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.models import Message, ProtocolMessage
from ably_bridge.protocol.pending import PendingPublish, PublishQueue

from .harness import err


def entry(handle: str, channel: str = "chat") -> PendingPublish:
    return PendingPublish(
        ProtocolMessage(Action.MESSAGE, channel=channel, messages=[Message("n", handle)]), handle
    )


def sent_queue(count: int, start: int = 0) -> PublishQueue:
    queue = PublishQueue(start)
    for i in range(count):
        queue.send(entry(f"h{i}"))
    return queue


def test_rtn7b_serials_increase_from_zero_at_send_time() -> None:
    queue = PublishQueue()
    first, second = entry("a"), entry("b")
    queue.enqueue(second)
    assert second.serial is None
    assert queue.send(first).msg_serial == 0
    assert [e.handle for e in queue.take_queued()] == ["b"]
    assert queue.send(second).msg_serial == 1
    assert queue.next_serial == 2
    assert len(queue) == 2
    assert "serial=0" in repr(first)


def test_ack_settles_a_range_with_res_serials() -> None:
    queue = sent_queue(3)
    done = queue.ack(0, 2, [{"serials": ["s0"]}, {"serials": ["s1", None]}])
    assert [(d.handle, d.error, d.serials) for d in done] == [
        ("h0", None, ["s0"]),
        ("h1", None, ["s1", None]),
    ]
    assert [e.handle for e in queue] == ["h2"]


def test_ack_without_res_and_odd_res_entries() -> None:
    queue = sent_queue(3)
    done = queue.ack(0, 3, [{"serials": "bad"}])
    assert [d.serials for d in done] == [None, None, None]


def test_skipped_serials_are_implicitly_nacked() -> None:
    queue = sent_queue(3)
    done = queue.ack(2, 1, None)
    assert [d.handle for d in done] == ["h0", "h1", "h2"]
    assert done[0].error is not None and done[1].error is not None
    assert done[2].error is None


def test_already_settled_serials_are_ignored() -> None:
    queue = sent_queue(2)
    queue.ack(0, 1, None)
    done = queue.ack(0, 2, None)
    assert [(d.handle, d.error) for d in done] == [("h1", None)]
    assert queue.ack(0, 2, None) == []


def test_nack_carries_the_server_error_or_a_default() -> None:
    queue = sent_queue(2)
    error = err(40160, 401)
    done = queue.nack(0, 1, error)
    assert done[0].error is error
    done = queue.nack(1, 1, None)
    assert done[0].error is not None and done[0].error.code == 50000


def test_rtn19a2_resend_keeps_serials() -> None:
    queue = sent_queue(2, start=5)
    assert [f.msg_serial for f in queue.resend_frames()] == [5, 6]


def test_rtn15c7_renumber_restarts_at_zero() -> None:
    queue = sent_queue(2, start=5)
    assert [f.msg_serial for f in queue.renumber()] == [0, 1]
    assert queue.next_serial == 2


def test_rtn11d_reset_serial_requeues_unsent() -> None:
    queue = sent_queue(2, start=5)
    queue.enqueue(entry("q"))
    queue.reset_serial()
    assert queue.next_serial == 0
    assert [e.handle for e in queue.queued] == ["h0", "h1", "q"]
    assert all(e.serial is None for e in queue.queued)


def test_rtn7e_fail_all_and_fail_where() -> None:
    queue = sent_queue(1)
    queue.enqueue(entry("a", "x"))
    queue.enqueue(entry("b", "y"))
    error = err(80002, 400)
    assert [d.handle for d in queue.fail_where(error, "x")] == ["a"]
    done = queue.fail_all(error)
    assert [(d.handle, d.error) for d in done] == [("h0", error), ("b", error)]
    assert len(queue) == 0
