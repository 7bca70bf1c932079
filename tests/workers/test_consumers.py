"""The de-duplicating envelope task decorator and its key."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import redis

from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message
from tests.workers.conftest import REDIS_DB14, running_worker, unique
from workers import BridgedEvent, WorkerSettings, decode_envelope
from workers.consumers import envelope_task, event_key


def built(data: Any, *, msg_id: str = "abc:0") -> Any:
    message = Message("greet", data, id=msg_id, client_id="me", extras={"headers": {"a": "1"}})
    message.timestamp = 1_700_000_000_000
    return EnvelopeBuilder("app1", "local").message("chan", message, "route-1")


def test_event_key_is_the_bridge_task_id() -> None:
    env = built("x")
    (event,) = decode_envelope(env.to_dict())
    assert event_key("chat.handle", event) == celery_task_id("route-1", "chat.handle", "m:abc:0")


def test_decorator_runs_the_handler_once_per_message_id(
    make_settings: Callable[..., WorkerSettings],
) -> None:
    settings = make_settings()
    seen: list[BridgedEvent] = []
    tasks: dict[str, Any] = {}
    envelope = built({"n": 1}, msg_id=unique("id") + ":0").to_dict()
    envelope["messages"][0]["data"] = base64.b64encode(b'{"n": 1}').decode()
    envelope["messages"][0]["encoding"] = "json/base64"

    def prepare(app: Any) -> None:
        @envelope_task(app, name=unique("consume"), settings=settings)
        def handle(event: BridgedEvent) -> None:
            seen.append(event)

        tasks["handle"] = handle

    with running_worker(settings, prepare):
        handle = tasks["handle"]
        first = handle.apply_async(args=(envelope,)).get(timeout=10)
        second = handle.apply_async(args=(envelope,)).get(timeout=10)  # redelivered envelope
        client = redis.Redis.from_url(REDIS_DB14)
        done = f"{settings.dedup_prefix}:task:done:{event_key(handle.name, seen[0])}"
        assert client.exists(done) and 0 < client.ttl(done) <= settings.dedup_ttl
        client.close()
    assert first == {"handled": 1, "skipped": 0} and second == {"handled": 0, "skipped": 1}
    assert len(seen) == 1 and seen[0].data == {"n": 1}


def test_decorator_releases_the_lock_when_the_handler_fails(
    make_settings: Callable[..., WorkerSettings],
) -> None:
    settings = make_settings()
    calls: list[str] = []
    tasks: dict[str, Any] = {}
    envelope = built("x", msg_id=unique("id") + ":0").to_dict()

    def prepare(app: Any) -> None:
        @envelope_task(app, name=unique("flaky"), settings=settings)
        def handle(event: BridgedEvent) -> None:
            calls.append(event.event_id)
            if len(calls) == 1:
                raise RuntimeError("first try fails")

        tasks["handle"] = handle

    with running_worker(settings, prepare):
        handle = tasks["handle"]
        failed = handle.apply_async(args=(envelope,))
        failed.get(timeout=10, propagate=False)
        assert failed.state == "FAILURE"
        assert handle.apply_async(args=(envelope,)).get(timeout=10) == {
            "handled": 1,
            "skipped": 0,
        }
    assert len(calls) == 2
