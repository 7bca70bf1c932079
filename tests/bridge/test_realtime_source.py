"""The realtime adapter with a fake client: ordering across listeners, detach, presence sync."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ably_bridge.bridge.realtime_source import RealtimeSource
from ably_bridge.bridge.source import SourceHandlers, StateChange
from ably_bridge.protocol.events import ChannelEvent, ChannelState, ChannelStateChange
from ably_bridge.protocol.models import Message, PresenceMessage


class FakeProps:
    def __init__(self, attach_serial: str | None) -> None:
        self.attach_serial = attach_serial


class FakePresence:
    def __init__(self) -> None:
        self.listeners: list[Callable[[list[PresenceMessage]], None]] = []
        self.members = [PresenceMessage(1, client_id="m", connection_id="c")]
        self.synced = threading.Event()

    def subscribe_raw(
        self,
        listener: Callable[[list[PresenceMessage]], None],
        attach: bool = True,
        inline: bool = False,
    ) -> Any:
        assert inline  # the source's listeners only queue: they run on the reading thread
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def get(self, wait_for_sync: bool = True, timeout: float | None = None) -> list[Any]:
        self.synced.set()
        return self.members


class FakeChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.properties = FakeProps(None)
        self.state_listeners: list[Callable[[ChannelStateChange], None]] = []
        self.message_listeners: list[Callable[[list[Message]], None]] = []
        self.presence = FakePresence()
        self.calls: list[str] = []

    @property
    def attach_serial(self) -> str | None:
        return self.properties.attach_serial

    def on(self, listener: Callable[[ChannelStateChange], None]) -> Any:
        self.state_listeners.append(listener)
        return lambda: self.state_listeners.remove(listener)

    def subscribe_batch(
        self,
        listener: Callable[[list[Message]], None],
        *,
        attach: bool = True,
        inline: bool = False,
    ) -> Any:
        assert inline  # the source's listeners only queue: they run on the reading thread
        self.message_listeners.append(listener)
        return lambda: self.message_listeners.remove(listener)

    def frame(self, *ids: str) -> None:
        """One inbound frame holding a message per id."""
        batch = [Message("e", "x", id=i) for i in ids]
        for listener in list(self.message_listeners):
            listener(batch)

    def attach(self, timeout: float | None = None) -> None:
        self.calls.append("attach")

    def detach(self, timeout: float | None = None) -> None:
        self.calls.append("detach")

    def emit_state(self, current: ChannelState, resumed: bool = False) -> None:
        change = ChannelStateChange(
            ChannelState.ATTACHING, current, ChannelEvent(current.value), None, resumed
        )
        for listener in list(self.state_listeners):
            listener(change)


class FakeClient:
    def __init__(self) -> None:
        self.chans: dict[str, FakeChannel] = {}
        self.channels = self
        self.connection = type("C", (), {"state": ChannelState.ATTACHED})()  # any enum
        self.closed = False

    def get(self, name: str, options: Any = None) -> FakeChannel:
        return self.chans.setdefault(name, FakeChannel(name))

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def recorder() -> tuple[SourceHandlers, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    handlers = SourceHandlers(
        lambda ms: seen.append(("messages", [m.id for m in ms])),
        lambda ps: seen.append(("presence", len(ps))),
        lambda ms: seen.append(("sync", len(ms))),
        lambda change: seen.append(("state", change)),
    )
    return handlers, seen


def test_a_message_of_a_new_attachment_is_preceded_by_its_continuity_loss() -> None:
    client = FakeClient()
    source = RealtimeSource(client)  # type: ignore[arg-type]
    handlers, seen = recorder()
    source.attach("ch", handlers, presence=True)
    ch = client.chans["ch"]
    ch.properties.attach_serial = "s1"
    # The message listener runs before the state listener got ATTACHED:
    ch.frame("m1")
    ch.emit_state(ChannelState.ATTACHED)  # same serial: not reported twice
    ch.presence.synced.wait(5)
    kinds = [k for k, _ in seen]
    assert kinds[:2] == ["state", "messages"]
    first: StateChange = seen[0][1]
    assert first.current == "attached" and not first.resumed and first.attach_serial == "s1"
    assert kinds.count("state") == 1
    # Continuity lost again: a new attach serial is reported once more.
    ch.properties.attach_serial = "s2"
    ch.emit_state(ChannelState.ATTACHED)
    states = [v for k, v in seen if k == "state"]
    assert [s.attach_serial for s in states] == ["s1", "s2"]
    # Resumed attaches pass through as they are.
    ch.emit_state(ChannelState.ATTACHED, resumed=True)
    assert seen[-1][1].resumed is True
    source.close()
    assert client.closed


def test_detach_silences_the_old_listeners() -> None:
    client = FakeClient()
    source = RealtimeSource(client)  # type: ignore[arg-type]
    handlers, _seen = recorder()
    source.attach("ch", handlers)
    ch = client.chans["ch"]
    source.detach("ch")
    assert ch.message_listeners == [] and ch.state_listeners == []
    source.close()


def test_a_raw_presence_frame_reaches_the_daemon_as_one_call_in_order() -> None:
    client = FakeClient()
    source = RealtimeSource(client)  # type: ignore[arg-type]
    handlers, seen = recorder()
    got: list[list[str | None]] = []
    handlers = SourceHandlers(
        handlers.messages, lambda ps: got.append([p.id for p in ps]), handlers.presence_sync,
        handlers.state,
    )  # fmt: skip
    source.attach("ch", handlers, presence=True)
    ch = client.chans["ch"]
    ch.properties.attach_serial = "s1"
    (listener,) = ch.presence.listeners
    leave = PresenceMessage(3, id="c2:3:0", client_id="b", connection_id="c2")
    stale = PresenceMessage(4, id="c1:1:0", client_id="a", connection_id="c1")
    listener([leave, stale])
    assert got == [["c2:3:0", "c1:1:0"]]
    assert [k for k, _ in seen][:1] == ["state"]  # the continuity loss went first
    source.close()
