"""Who steps the session: inbound frames on the reading thread, everything else on the loop.

The thread that reads a websocket (the shared reactor, or the socket's own
reader with ``shared_reader=False``) runs the core with the frames it read,
under the session lock, so an inbound message wakes no thread but that one
and, for a pool listener, the callback pool (:mod:`ably_bridge.realtime.loop`).
A frame other than MESSAGE wakes the loop thread to look at its deadlines again.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.events import ChannelState
from ably_bridge.realtime import AblyRealtime
from ably_bridge.realtime.loop import SessionLoop
from tests.support.wait import eventually

from .conftest import Collector, MakeClient


def _session(client: AblyRealtime) -> SessionLoop:
    loop = client._loop
    assert isinstance(loop, SessionLoop)
    return loop


def _record_frames(loop: SessionLoop) -> list[tuple[Any, str, int]]:
    """Wrap the core's frame entry: (action, thread name, the loop's wake-ups so far)."""
    frames: list[tuple[Any, str, int]] = []
    frame_received = loop.core.frame_received

    def recording_frame(tid: int, pm: Any, now: float) -> Any:
        frames.append((pm.action, threading.current_thread().name, loop.wakeups))
        return frame_received(tid, pm, now)

    loop.core.frame_received = recording_frame  # type: ignore[method-assign]
    return frames


@pytest.mark.parametrize(("shared_reader", "reader"), [(True, "ably-reactor"), (False, "ably-ws-")])
def test_inbound_messages_are_stepped_on_the_reader_thread(
    make_client: MakeClient, shared_reader: bool, reader: str
) -> None:
    subscriber = make_client(shared_reader=shared_reader)
    publisher = make_client()
    channel = subscriber.channels.get("driving")
    received = Collector()
    channel.subscribe(received)
    channel.attach()
    loop = _session(subscriber)
    frames = _record_frames(loop)
    steps_before = loop.steps

    out = publisher.channels.get("driving")
    for i in range(40):
        out.publish("n", str(i))
    messages = received.wait_for(40)
    assert [m.data for m in messages] == [str(i) for i in range(40)]

    inbound = [name for action, name, _wakeups in frames if action == Action.MESSAGE]
    assert len(inbound) == 40
    assert all(name.startswith(reader) for name in inbound), set(inbound)
    # The loop thread woke for heartbeats at most, never once per message.
    assert loop.steps - steps_before < 20, loop.steps - steps_before


def test_a_control_frame_wakes_the_loop_for_its_timers(
    make_client: MakeClient, emulator: Emulator, app_id: str
) -> None:
    # A server DETACHED arrives on the reader thread and re-attaches at once
    # (RTL13a), which starts the attach timeout: only the loop thread waits on
    # timers, so the reader must wake it to look at its deadline again.
    client = make_client()
    channel = client.channels.get("woken")
    channel.attach()
    states = Collector()
    channel.on(states)
    emulator.faults.stop_heartbeats(app_id=app_id)  # no other control frames meanwhile
    loop = _session(client)
    frames = _record_frames(loop)
    assert emulator.faults.channel_fault(app_id, "woken", action="detached", code=90198) == 1
    got = states.wait_for(2)
    assert [c.current for c in got] == [ChannelState.ATTACHING, ChannelState.ATTACHED]
    wakeups_then = next(w for action, _name, w in frames if action == Action.DETACHED)
    # (the loop thread takes the wake-up on its own time: the ATTACHED may come first)
    eventually(lambda: loop.wakeups > wakeups_then, what=repr(frames))
