"""Large history and presence results stream page by page, one bounded task result per page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.emulator.server import Emulator
from ably_bridge.protocol.models import Message
from tests.workers.conftest import rest_client, running_worker, unique
from workers import AblyTaskError, WorkerSettings, producers
from workers.paging import iter_history, iter_presence

TIMEOUT = 30


def _counting(app: Any) -> list[dict[str, Any]]:
    """Record every task ``app`` sends (name and kwargs)."""
    sent: list[dict[str, Any]] = []
    original = app.send_task

    def send_task(name: str, *args: Any, **kwargs: Any) -> Any:
        sent.append({"name": name, **(kwargs.get("kwargs") or {})})
        return original(name, *args, **kwargs)

    app.send_task = send_task
    return sent


@pytest.mark.slow
def test_a_2500_message_history_streams_in_pages(
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    channel = unique("export")
    published: list[str] = []
    with rest_client(emulator, ably_app["root_key"]) as rest:
        target = rest.channels.get(channel)
        for batch in range(25):
            messages = [
                Message("n", f"{batch}-{i}", id=f"{channel}:{batch}:{i}") for i in range(100)
            ]
            target.publish(messages=messages)
            published.extend(str(m.id) for m in messages)
    with running_worker(make_settings("redis")) as app:
        sent = _counting(app)
        streamed = iter_history(channel, direction="forwards", page_size=1000, app=app)
        ids = [item["id"] for item in streamed]
        with pytest.raises(AblyTaskError) as info:
            producers.history(channel, max_items=5001, app=app).get(timeout=TIMEOUT)
    assert ids == published
    pages = [s for s in sent if s["name"] == "ably.history" and s.get("max_items") is None]
    assert len(pages) == 3  # 1,000 + 1,000 + 500: no result held more than a page
    assert all("cursor" in s for s in pages[1:])
    assert info.value.code == 40003 and "max_items" in info.value.message


def test_presence_streams_in_pages(
    make_settings: Callable[..., WorkerSettings], emulator: Emulator
) -> None:
    channel = unique("members")
    members = [{"clientId": f"user-{i:03d}", "data": str(i)} for i in range(250)]
    reply = emulator.create_app(
        {
            "keys": [{"capability": '{"*":["*"]}'}],
            "channels": [{"name": channel, "presence": members}],
        }
    )
    key = reply["keys"][0]["keyStr"]
    try:
        with running_worker(make_settings("redis", ably_key=key)) as app:
            sent = _counting(app)
            seen = [m["clientId"] for m in iter_presence(channel, page_size=100, app=app)]
    finally:
        emulator.delete_app(reply["appId"])
    assert sorted(seen) == [m["clientId"] for m in members]
    assert len([s for s in sent if s["name"] == "ably.presence_get"]) == 3


def test_a_bad_page_size_is_refused_before_any_task() -> None:
    with pytest.raises(ValueError, match="page_size"):
        iter_history("c", page_size=1001, app=object())
    with pytest.raises(TypeError, match="page_size"):
        iter_presence("c", page_size="10", app=object())  # type: ignore[arg-type]
