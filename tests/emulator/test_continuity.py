"""Channel continuity: when an ATTACH from a channelSerial may be RESUMED (RTL15b)."""

from __future__ import annotations

from ably_bridge.emulator.channels import Channel, make_serial


def _channel_with(count: int, *, max_items: int | None = None) -> Channel:
    channel = Channel(app_id="app", name="ch")
    for i in range(count):
        serial = channel.next_serial()
        channel.append_history({"serial": serial, "timestamp": i}, None, max_items, i)
    return channel


def test_any_reached_serial_resumes_while_history_is_whole() -> None:
    channel = _channel_with(5)
    assert channel.knows_serial(make_serial(0))
    assert channel.knows_serial(make_serial(3))
    assert channel.knows_serial(channel.current_serial)
    assert not channel.knows_serial(make_serial(6))  # never reached
    assert not channel.knows_serial("not-a-serial")


def test_trimmed_history_breaks_continuity_before_the_first_retained_message() -> None:
    channel = _channel_with(10, max_items=3)  # keeps serials 8, 9, 10
    assert channel.knows_serial(make_serial(7))  # 8.. are all retained
    assert not channel.knows_serial(make_serial(6))  # 7 is gone
    assert channel.knows_serial(channel.current_serial)


def test_history_gone_entirely_keeps_only_the_current_point() -> None:
    channel = _channel_with(4)
    channel.history.clear()
    assert channel.knows_serial(channel.current_serial)
    assert not channel.knows_serial(make_serial(2))


def test_expired_continuity_refuses_every_earlier_serial() -> None:
    channel = _channel_with(4)
    channel.expire_continuity()
    assert not channel.knows_serial(make_serial(4))
    channel.next_serial()
    assert channel.knows_serial(channel.current_serial)


def test_presence_events_between_keep_continuity_and_are_replayed_in_serial_order() -> None:
    channel = Channel(app_id="app", name="ch")
    channel.apply_presence({"serial": channel.next_serial(), "action": 2, "clientId": "a"})
    channel.append_history({"serial": channel.next_serial(), "timestamp": 1}, None, None, 1)
    channel.apply_presence({"serial": channel.next_serial(), "action": 3, "clientId": "a"})
    assert channel.knows_serial(make_serial(0))  # serial 1 is a presence event, kept
    replay = channel.events_after(make_serial(0))
    assert [(presence, e["serial"]) for presence, e in replay] == [
        (True, make_serial(1)),
        (False, make_serial(2)),
        (True, make_serial(3)),
    ]
    assert [e["serial"] for _, e in channel.events_after(make_serial(2))] == [make_serial(3)]


def test_a_trimmed_message_between_presence_events_breaks_continuity() -> None:
    channel = Channel(app_id="app", name="ch")
    channel.apply_presence({"serial": channel.next_serial(), "action": 2, "clientId": "a"})
    for i in range(3):  # messages 2, 3, 4; only the last two kept
        channel.append_history({"serial": channel.next_serial(), "timestamp": i}, None, 2, i)
    assert not channel.knows_serial(make_serial(0))  # message 2 is gone
    assert channel.knows_serial(make_serial(2))
