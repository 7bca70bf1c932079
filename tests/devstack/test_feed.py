"""The dev console's feed: your events, read from a real Redis Stream, at both stages."""

from __future__ import annotations

import json

import redis

from ably_bridge.devstack.feed import Feed, Sighting, format_sighting
from ably_bridge.devstack.handler import HandlerResult
from ably_bridge.devstack.layout import PUBLISHER_CLIENT_ID, TASK_NAME, DevLayout
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message, PresenceMessage


def _add(client: redis.Redis, layout: DevLayout, envelope_json: str) -> str:
    return client.xadd(layout.stream_key, {"envelope": envelope_json}).decode()


def test_yours_are_reported_at_the_stream_then_when_handled(run_layout: DevLayout) -> None:
    layout = run_layout
    client = redis.Redis.from_url(layout.data_url)
    builder = EnvelopeBuilder("dev", "dev")
    demo = builder.message(
        "chat:lobby", Message(id="demo:0", name="text", data="tick", client_id=PUBLISHER_CLIENT_ID),
        "chat",
    )  # fmt: skip
    yours = builder.message(
        "chat:lobby", Message(id="you:0", name="text", data={"t": "hi"}, client_id="me"), "chat"
    )
    enter = builder.presence(
        "chat:room", PresenceMessage(id="you:1:0", action=2, client_id="me", data="here"), "chat"
    )
    _add(client, layout, demo.to_json())
    entry = _add(client, layout, yours.to_json())
    client.xadd(layout.stream_key, {"not": "an envelope"})
    _add(client, layout, enter.to_json())

    feed = Feed(layout, TASK_NAME)
    first = feed.poll()
    assert [(s.stage, s.id, s.source) for s in first] == [
        ("stream", "you:0", "message"),
        ("stream", "you:1:0", "presence"),
    ]
    assert first[0].entry_id == entry
    assert first[0].data == '{"t": "hi"}'
    assert first[1].name == "enter"
    assert feed.poll() == []  # nothing new, nothing handled yet

    result = HandlerResult("my:handle", output="said hi\n", returned="2")
    client.hset(layout.results_key, "you:0", json.dumps(result.as_dict()))
    handled = feed.poll()
    assert [(s.stage, s.id, s.task) for s in handled] == [("handled", "you:0", TASK_NAME)]
    assert handled[0].result["output"] == "said hi\n"
    assert feed.poll() == []  # each stage once
    feed.close()
    client.close()


def test_an_unreadable_redis_gives_no_sightings() -> None:
    layout = DevLayout.for_shared_redis("redis://127.0.0.1:1/0", "x")
    feed = Feed(layout, TASK_NAME)
    assert feed.poll() == []
    feed.close()


def _sighting(**changes: object) -> Sighting:
    base = {
        "stage": "stream", "source": "message", "channel": "chat:lobby", "id": "a:0",
        "name": "text", "data": "'hi'", "client_id": "me", "stream": "s", "entry_id": "1-0",
    }  # fmt: skip
    base.update(changes)
    return Sighting(**base)  # type: ignore[arg-type]


def test_text_lines() -> None:
    assert format_sighting(_sighting()) == [
        "  > chat:lobby: text 'hi' from me (id a:0) -> stream s 1-0"
    ]
    assert format_sighting(_sighting(source="presence", name="enter", client_id=None)) == [
        "  > chat:lobby: presence enter 'hi' (id a:0) -> stream s 1-0"
    ]
    plain = _sighting(stage="handled", task="dev.chat_event", result={"handler": "dev.chat_event"})
    assert format_sighting(plain) == ["    handled by task dev.chat_event (id a:0)"]
    ran = _sighting(
        stage="handled", task="t", result={"handler": "m:h", "output": "x\ny\n", "returned": "3"}
    )
    assert format_sighting(ran) == [
        "    handled by task t (id a:0); your handler m:h ran and returned 3",
        "    | x",
        "    | y",
    ]
    failed = _sighting(stage="handled", task="t", result={"handler": "m:h", "error": "E: no"})
    assert format_sighting(failed)[0].endswith("your handler m:h raised E: no")
    assert _sighting().as_dict()["event"] == "yours"
