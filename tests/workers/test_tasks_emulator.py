"""The ably.* tasks through a real worker, a real broker and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ably_bridge.emulator.server import Emulator
from ably_bridge.protocol.models import Message
from ably_bridge.realtime import AblyRealtime
from tests.workers.conftest import PRESENCE_CHANNEL, rest_client, running_worker, unique
from workers import WorkerSettings, producers

TIMEOUT = 10


@pytest.fixture(scope="module")
def module_worker(
    emulator: Emulator, ably_app: dict[str, Any]
) -> Iterator[tuple[Any, WorkerSettings]]:
    """One worker on the Redis broker for the read-only and happy-path tests."""
    from tests.workers.conftest import FAST_RETRY, REDIS_DB14

    tag = unique("abw")
    settings = WorkerSettings(
        ably_key=ably_app["root_key"],
        client_options={"endpoint": "127.0.0.1", "port": emulator.port, "tls": False},
        broker_url=REDIS_DB14,
        result_backend=REDIS_DB14,
        retry=FAST_RETRY,
        queue=tag,
        redis_key_prefix=f"{tag}:",
        broker_timeout=5.0,
    )
    with running_worker(settings) as app:
        yield app, settings


@pytest.fixture
def app(module_worker: tuple[Any, WorkerSettings]) -> Any:
    return module_worker[0]


def history_items(emulator: Emulator, key: str, channel: str) -> list[Message]:
    with rest_client(emulator, key) as rest:
        return list(rest.channels.get(channel).history(direction="forwards"))


def test_publish_round_trip_with_enqueued_ids(
    app: Any, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    channel = unique("pub")
    receipt = producers.publish(
        channel, "greeting", {"hello": "world"}, extras={"headers": {"k": "v"}}, app=app
    )
    result = receipt.get(timeout=TIMEOUT)
    assert result["messageIds"] == receipt.message_ids
    binary = producers.publish(channel, "bin", b"\x00\x01\xff", app=app).get(timeout=TIMEOUT)
    items = history_items(emulator, ably_app["root_key"], channel)
    assert [m.id for m in items] == receipt.message_ids + binary["messageIds"]
    assert items[0].data == {"hello": "world"} and items[0].extras == {"headers": {"k": "v"}}
    assert items[1].data == b"\x00\x01\xff"


def test_publish_many_messages_and_batch(
    app: Any, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    channel, other = unique("many"), unique("many")
    receipt = producers.publish(
        channel, messages=[Message("a", "1"), {"name": "b", "data": "2"}], app=app
    )
    assert receipt.get(timeout=TIMEOUT)["messageIds"] == receipt.message_ids
    assert receipt.message_ids[0].endswith(":0") and receipt.message_ids[1].endswith(":1")
    batch = producers.publish_batch(
        [{"channels": [channel, other], "messages": [{"name": "c", "data": "3"}]}], app=app
    ).get(timeout=TIMEOUT)
    assert batch[0]["successCount"] == 2 and batch[0]["failureCount"] == 0
    assert [m.data for m in history_items(emulator, ably_app["root_key"], channel)] == [
        "1",
        "2",
        "3",
    ]
    assert [m.data for m in history_items(emulator, ably_app["root_key"], other)] == ["3"]


def test_history_pages_with_cursor_and_max_items(
    app: Any, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    channel = unique("hist")
    with rest_client(emulator, ably_app["root_key"]) as rest:
        rest.channels.get(channel).publish(messages=[Message("n", str(i)) for i in range(7)])
    first = producers.history(channel, direction="forwards", limit=3, app=app).get(timeout=TIMEOUT)
    assert [m["data"] for m in first["items"]] == ["0", "1", "2"] and first["next"]
    second = producers.history(channel, cursor=first["next"], app=app).get(timeout=TIMEOUT)
    assert [m["data"] for m in second["items"]] == ["3", "4", "5"]
    everything = producers.history(
        channel, direction="forwards", limit=2, max_items=5, app=app
    ).get(timeout=TIMEOUT)
    assert [m["data"] for m in everything["items"]] == ["0", "1", "2", "3", "4"]
    assert everything["next"] is not None
    rest_page = producers.history(channel, cursor=everything["next"], app=app).get(timeout=TIMEOUT)
    assert [m["data"] for m in rest_page["items"]] == ["5", "6"] and rest_page["next"] is None


def test_presence_get_matches_the_fixture(app: Any) -> None:
    page = producers.presence_get(PRESENCE_CHANNEL, app=app).get(timeout=TIMEOUT)
    members = {m["clientId"]: m["data"] for m in page["items"]}
    assert members == {"alice": "a", "bob": {"role": "admin"}, "carol": "c"}
    one = producers.presence_get(PRESENCE_CHANNEL, client_id="bob", app=app).get(timeout=TIMEOUT)
    assert [m["clientId"] for m in one["items"]] == ["bob"]
    paged = producers.presence_get(PRESENCE_CHANNEL, limit=2, max_items=3, app=app).get(
        timeout=TIMEOUT
    )
    assert sorted(m["clientId"] for m in paged["items"]) == ["alice", "bob", "carol"]


def test_stats_matches_the_fixture(app: Any) -> None:
    start, end = 1672567200000, 1672567320000  # 2023-01-01 10:00 .. 10:02 UTC
    page = producers.stats(
        start=start, end=end, direction="forwards", unit="minute", limit=2, app=app
    ).get(timeout=TIMEOUT)
    assert [s["intervalId"] for s in page["items"]] == ["2023-01-01:10:00", "2023-01-01:10:01"]
    assert page["items"][0]["entries"]["messages.all.messages.count"] == 5
    rest_page = producers.stats(cursor=page["next"], app=app).get(timeout=TIMEOUT)
    assert [s["entries"]["messages.all.messages.count"] for s in rest_page["items"]] == [11]
    hourly = producers.stats(start=start, end=end, unit="hour", app=app).get(timeout=TIMEOUT)
    assert hourly["items"][0]["entries"]["messages.all.messages.count"] == 23


def test_time_and_channel_status(app: Any, emulator: Emulator, ably_app: dict[str, Any]) -> None:
    assert producers.time(app=app).get(timeout=TIMEOUT) > 1_600_000_000_000
    channel = unique("status")
    producers.publish(channel, "x", "y", app=app).get(timeout=TIMEOUT)
    status = producers.channel_status(channel, app=app).get(timeout=TIMEOUT)
    assert status["channelId"] == channel and status["status"]["isActive"] is True


def test_token_request_and_token_authenticate_rest_calls(
    app: Any, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    channel = unique("tok")
    signed = producers.token_request(
        client_id="worker-test", capability={channel: ["publish", "history"]}, ttl=60, app=app
    ).get(timeout=TIMEOUT)
    assert signed["keyName"] and signed["mac"] and "token" not in signed
    with rest_client(emulator, auth_callback=lambda params: signed) as rest:
        rest.channels.get(channel).publish("via-token-request", "1")
        assert rest.auth.client_id == "worker-test"
    token = producers.token_request(ttl=60, kind="token", app=app).get(timeout=TIMEOUT)
    with rest_client(emulator, token=token["token"]) as rest:
        assert [m.name for m in rest.channels.get(channel).history()] == ["via-token-request"]


def test_token_from_the_task_connects_a_realtime_client(
    app: Any, emulator: Emulator, ably_app: dict[str, Any]
) -> None:
    channel = unique("rt-token")
    signed = producers.token_request(
        client_id="rt-worker", capability={channel: ["publish", "subscribe"]}, ttl=60, app=app
    ).get(timeout=TIMEOUT)
    with AblyRealtime(
        auth_callback=lambda params: signed,
        endpoint="127.0.0.1",
        port=emulator.port,
        tls=False,
    ) as realtime:
        realtime.connection.wait_for_state("connected", timeout=10)
        assert realtime.auth.client_id == "rt-worker"
        realtime.channels.get(channel).publish("over-realtime", "1")
    token = producers.token_request(ttl=60, kind="token", app=app).get(timeout=TIMEOUT)
    with AblyRealtime(
        token=token["token"], endpoint="127.0.0.1", port=emulator.port, tls=False
    ) as realtime:
        realtime.connection.wait_for_state("connected", timeout=10)
        history = realtime.channels.get(channel).history()
        assert [m.name for m in history.items] == ["over-realtime"]
