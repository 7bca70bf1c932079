"""Presence across SDKs: OUR realtime client, ably-js and the official Python SDK together.

Three members share a channel: ``ours`` (``ably_bridge.AblyRealtime``), ``js``
(ably-js 2.28.0 in ``js/presence_peer.js``) and ``py`` (the asyncio
``AblyRealtime`` of the ``ably`` package, on a loop thread of its own). Each of
them is also an observer: after every step, every observer must show the
expected members in ``presence.get()`` and must have received the expected
events through its presence subscription. Payloads differ per SDK (JSON,
binary, string) so that decoding is checked across SDKs too. Each test runs
with every client on JSON and on msgpack.

* enter, update and leave by each SDK, seen by all three (exact per-member
  event sequences: enter, update, leave);
* abrupt disconnects: our connection dropped and resumed (members kept), our
  connection state lost (others see LEAVE, then our client re-enters on its
  own, RTP17), ably-js killed with SIGKILL and the Python SDK's transport
  dropped with reconnects refused (the others see the synthetic LEAVE after the
  emulator's ``presence_leave_delay_ms``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from ably_bridge import AblyRealtime
from ably_bridge.emulator import Emulator
from ably_bridge.protocol.actions import PresenceAction
from ably_bridge.protocol.models import PresenceMessage
from tests.support.wait import eventually

from .sdk import TIMEOUT, PyRealtimeThread, describe

T = TypeVar("T")
Members = dict[str, dict[str, Any]]  # clientId -> described data
Event = tuple[str, str, dict[str, Any]]  # (action, clientId, described data)
Seen = tuple[str, str, str | None]  # (action, clientId, connectionId)
PY_ACTIONS = {0: "absent", 1: "present", 2: "enter", 3: "leave", 4: "update"}

ENTER_DATA: Members = {
    "ours": {"type": "json", "value": {"sdk": "ably-bridge", "n": [1, 2]}},
    "js": {"type": "binary", "value": "cafe00ff"},
    "py": {"type": "string", "value": "py héllo"},
}
UPDATE_DATA: Members = {
    "ours": {"type": "binary", "value": "0102fe"},
    "js": {"type": "string", "value": "js updated"},
    "py": {"type": "json", "value": {"sdk": "ably-python", "ok": True}},
}


def poll(check: Callable[[], bool], timeout: float) -> bool:
    """Whether ``check`` becomes true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _data(value: Any) -> dict[str, Any]:
    return describe(value)


class Ours:
    """Our client as member and observer."""

    name = "ours"

    def __init__(self, emulator: Emulator, key: str, binary: bool, channel: str) -> None:
        self.client = AblyRealtime(
            key=key,
            client_id="ours",
            endpoint=emulator.host,
            port=emulator.port,
            tls=False,
            use_binary_protocol=binary,
            auto_connect=False,
            # a second drop soon after a resume waits this long (RTB1), not 15 s
            disconnected_retry_timeout=0.5,
        )
        self.client.connect(timeout=TIMEOUT)
        self.channel = self.client.channels.get(channel)
        self._events: list[Event] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self.channel.presence.subscribe(self._record)
        self.channel.attach(timeout=TIMEOUT)

    def _record(self, message: PresenceMessage) -> None:
        with self._lock:
            self._events.append(
                (
                    PresenceAction(message.action).name.lower(),
                    str(message.client_id),
                    _data(message.data),
                )
            )
            self._seen.append(
                (
                    PresenceAction(message.action).name.lower(),
                    str(message.client_id),
                    message.connection_id,
                )
            )

    @property
    def connection_id(self) -> str | None:
        return self.client.connection.id

    def enter(self, data: Any) -> None:
        self.channel.presence.enter(data, timeout=TIMEOUT)

    def update(self, data: Any) -> None:
        self.channel.presence.update(data, timeout=TIMEOUT)

    def leave(self) -> None:
        self.channel.presence.leave(timeout=TIMEOUT)

    def members(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        return [
            (str(m.client_id), m.connection_id, _data(m.data))
            for m in self.channel.presence.get(timeout=TIMEOUT)
        ]

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def close(self) -> None:
        self.client.close(timeout=TIMEOUT)


class Js:
    """ably-js (``js/presence_peer.js``) as member and observer."""

    name = "js"

    def __init__(self, js_peer: Any, key: str, binary: bool, channel: str) -> None:
        self.peer = js_peer(key, binary, script="presence_peer.js", clientId="js")
        self.connection_id = self.peer.call("ready")["connectionId"]
        self.channel = channel
        self.peer.call("watch", channel=channel)

    def enter(self, data: Any) -> None:
        self.peer.call("enter", channel=self.channel, data=describe(data))

    def update(self, data: Any) -> None:
        self.peer.call("update", channel=self.channel, data=describe(data))

    def leave(self) -> None:
        self.peer.call("leave", channel=self.channel, data=None)

    def members(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        found = self.peer.call("members", channel=self.channel)["members"]
        return [(m["clientId"], m["connectionId"], m["data"]) for m in found]

    def events(self) -> list[Event]:
        found = self.peer.call("events", channel=self.channel)["events"]
        return [(e["action"], e["clientId"], e["data"]) for e in found]

    def seen(self) -> list[Seen]:
        found = self.peer.call("events", channel=self.channel)["events"]
        return [(e["action"], e["clientId"], e["connectionId"]) for e in found]

    def kill(self) -> None:
        self.peer.proc.kill()  # SIGKILL: no CLOSE, no LEAVE; the socket just goes away
        self.peer.proc.wait(TIMEOUT)


class Py:
    """The official Python SDK (asyncio) as member and observer."""

    name = "py"

    def __init__(self, emulator: Emulator, key: str, binary: bool, channel: str) -> None:
        # A long retry delay: once its reconnects are refused it stays away for the test.
        self.sdk = PyRealtimeThread(emulator, key, binary, "py", disconnected_retry_timeout=60_000)
        self.channel = self.sdk.client.channels.get(channel)
        self._events: list[Event] = []
        self._seen: list[Seen] = []
        self.sdk.run(self.channel.presence.subscribe(self._record))

    def _record(self, message: Any) -> None:
        self._events.append((PY_ACTIONS[message.action], message.client_id, _data(message.data)))
        self._seen.append((PY_ACTIONS[message.action], message.client_id, message.connection_id))

    @property
    def connection_id(self) -> str | None:
        return self.sdk.connection_id

    def enter(self, data: Any) -> None:
        self.sdk.run(self.channel.presence.enter(data))

    def update(self, data: Any) -> None:
        self.sdk.run(self.channel.presence.update(data))

    def leave(self) -> None:
        self.sdk.run(self.channel.presence.leave())

    def members(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        found = self.sdk.run(self.channel.presence.get())
        return [(m.client_id, m.connection_id, _data(m.data)) for m in found]

    def events(self) -> list[Event]:
        return list(self._events)  # appended on the loop thread; a copy is a snapshot

    def seen(self) -> list[Seen]:
        return list(self._seen)

    def close(self) -> None:
        self.sdk.close()


Observer = Ours | Js | Py


@pytest.fixture
def trio(
    emulator: Emulator, key: str, binary: bool, channel_name: str, js_peer: Any
) -> Iterator[tuple[Ours, Js, Py]]:
    """The three clients, each attached to the channel and subscribed to its presence."""
    ours = Ours(emulator, key, binary, channel_name)
    try:
        js = Js(js_peer, key, binary, channel_name)
        py = Py(emulator, key, binary, channel_name)
        try:
            yield ours, js, py
        finally:
            py.close()
    finally:
        ours.close()


def decode(value: dict[str, Any]) -> Any:
    return bytes.fromhex(value["value"]) if value["type"] == "binary" else value["value"]


def expect_members(observers: list[Observer], wanted: Members, step: str) -> None:
    """Every observer's ``get()`` settles on exactly ``wanted`` (clientId -> data)."""
    for observer in observers:

        def settled(observer: Observer = observer) -> bool:
            return {c: d for c, _, d in observer.members()} == wanted

        try:
            eventually(settled, TIMEOUT, f"{step}: {observer.name} get() == {sorted(wanted)}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: got {observer.members()}; events {observer.events()}"
            ) from None


def expect_events(observers: list[Observer], wanted: list[Event], step: str) -> None:
    """Every observer's subscription has received every event of ``wanted``."""
    for observer in observers:

        def received(observer: Observer = observer) -> bool:
            got = observer.events()
            return all(event in got for event in wanted)

        try:
            eventually(received, TIMEOUT, f"{step}: {observer.name} events")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: wanted {wanted}, got {observer.events()}") from None


def assert_reentered_once(observer: Observer, first_id: str | None, new_id: str) -> None:
    """``observer`` saw ours enter on ``first_id``, leave it, and enter once on ``new_id``.

    Each (clientId, connectionId) member enters once: a second ENTER for a member
    already present is an UPDATE (RTP2d). Under a heavily loaded machine our
    client may lose its new connection too; a member on any further connection
    must then leave before the next one enters, never overlap.
    """
    ours = [(a, conn) for a, c, conn in observer.seen() if c == "ours" and a != "update"]
    detail = (observer.name, ours, observer.events())
    assert ours[:3] == [("enter", first_id), ("leave", first_id), ("enter", new_id)], detail
    present: set[str | None] = {new_id}
    for action, conn in ours[3:]:
        if action == "enter":
            assert conn not in present, ("a second ENTER for one member", *detail)
            present.add(conn)
        else:
            assert conn in present, ("a LEAVE for an absent member", *detail)
            present.discard(conn)
    assert len(present) == 1, ("ours is a member on several connections", *detail)


def expect_left(observers: list[Observer], client_id: str, step: str) -> None:
    for observer in observers:

        def seen(observer: Observer = observer) -> bool:
            return any(a == "leave" and c == client_id for a, c, _ in observer.events())

        eventually(seen, TIMEOUT, f"{step}: {observer.name} sees {client_id} leave")


def test_enter_update_leave_seen_by_every_sdk(trio: tuple[Ours, Js, Py]) -> None:
    ours, js, py = trio
    everyone: list[Observer] = [ours, js, py]

    for member in everyone:
        member.enter(decode(ENTER_DATA[member.name]))
    expect_members(everyone, ENTER_DATA, "enter")
    expect_events(everyone, [("enter", c, d) for c, d in ENTER_DATA.items()], "enter")
    connection_ids = {m.name: m.connection_id for m in everyone}
    for observer in everyone:
        assert {c: conn for c, conn, _ in observer.members()} == connection_ids, observer.name

    for member in everyone:
        member.update(decode(UPDATE_DATA[member.name]))
    expect_members(everyone, UPDATE_DATA, "update")
    expect_events(everyone, [("update", c, d) for c, d in UPDATE_DATA.items()], "update")

    remaining = dict(UPDATE_DATA)
    for member in everyone:
        member.leave()
        del remaining[member.name]
        expect_left(everyone, member.name, f"{member.name} leaves")
        expect_members(everyone, remaining, f"{member.name} leaves")

    for observer in everyone:  # nothing else, in this order, per member
        for client_id in ENTER_DATA:
            actions = [a for a, c, _ in observer.events() if c == client_id]
            assert actions == ["enter", "update", "leave"], (observer.name, client_id)


def test_abrupt_disconnects_seen_by_every_sdk(
    trio: tuple[Ours, Js, Py], emulator: Emulator, app: dict[str, Any]
) -> None:
    ours, js, py = trio
    everyone: list[Observer] = [ours, js, py]
    for member in everyone:
        member.enter(decode(ENTER_DATA[member.name]))
    expect_members(everyone, ENTER_DATA, "enter")

    # 1. Our transport dropped: our client resumes the same connection, members stay.
    #    (An update racing the re-attach after a resume is ordered after the automatic
    #    re-entry; the core's test_presence_queued_during_reattach_goes_after_the_reentry
    #    pins that deterministically.)
    ours.update(decode(UPDATE_DATA["ours"]))
    after_update = {**ENTER_DATA, "ours": UPDATE_DATA["ours"]}
    expect_members(everyone, after_update, "update")
    first_id = ours.connection_id
    assert emulator.faults.drop_connections(connection_id=first_id) == 1
    eventually(
        lambda: (
            ours.client.connection.state.value == "connected"
            and ours.connection_id == first_id
            and ours.channel.state.value == "attached"
        ),
        TIMEOUT,
        "our client resumed its connection",
    )
    expect_members(everyone, after_update, "after resume")

    # 2. Our connection state lost (no resume): the others see our member leave, and
    #    our client re-enters it by itself on the new connection (RTP17i), latest data.
    assert emulator.faults.forget_connections(connection_id=first_id) == 1
    expect_left([js, py], "ours", "connection state lost")
    new_id = eventually(
        lambda: ours.connection_id if ours.connection_id not in (None, first_id) else None,
        TIMEOUT,
        "our client on a new connection",
    )
    for observer in everyone:

        def reentered(observer: Observer = observer) -> bool:
            return ("ours", new_id) in {(c, conn) for c, conn, _ in observer.members()}

        eventually(reentered, TIMEOUT, f"{observer.name} sees ours on connection {new_id}")
    expect_members(everyone, after_update, "re-entered")
    for observer in (js, py):

        def settled(observer: Observer = observer) -> bool:
            try:
                assert_reentered_once(observer, first_id, new_id)
            except AssertionError:
                return False
            return True

        if not poll(settled, TIMEOUT):
            assert_reentered_once(observer, first_id, new_id)  # fails, saying what it saw

    # 3. ably-js killed: the others see the emulator's synthetic LEAVE.
    js.kill()
    expect_left([ours, py], "js", "ably-js killed")
    without_js = {c: d for c, d in after_update.items() if c != "js"}
    expect_members([ours, py], without_js, "ably-js killed")

    # 4. The Python SDK's transport dropped and its reconnects refused: LEAVE for it.
    emulator.faults.refuse_connections(count=1000, app_id=app["appId"])
    try:
        assert emulator.faults.drop_connections(connection_id=py.connection_id) == 1
        expect_left([ours], "py", "Python SDK dropped")
        expect_members([ours], {"ours": UPDATE_DATA["ours"]}, "Python SDK dropped")
    finally:
        emulator.faults.clear()
    actions = [a for a, c, _ in ours.events() if c in ("js", "py")]
    assert sorted(actions) == ["enter", "enter", "leave", "leave"]
