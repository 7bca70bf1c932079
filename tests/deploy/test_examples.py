"""examples/: the producer, the chat worker's reactions and the Flask token endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ably_bridge import AblyRest, PresenceAction, TokenRequest
from ably_bridge.emulator import Emulator
from workers.consumers import decode_envelope
from workers.streams import StreamEntry


class RecordingApp:
    """Stands in for a Celery app: records ``send_task`` calls."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, kwargs: dict[str, Any], **options: Any) -> Any:
        self.sent.append((name, kwargs))

        class Result:
            id = f"task-{len(self.sent)}"

        return Result()


def test_producer_enqueues_publishes_with_fixed_ids(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import producer

    app = RecordingApp()
    assert producer.main(["--channel", "chat:news", "--count", "2"], app=app) == 0
    assert [name for name, _ in app.sent] == ["ably.publish", "ably.publish"]
    first = app.sent[0][1]
    assert first["channel"] == "chat:news"
    [message] = first["messages"]
    assert message["name"] == "text" and message["clientId"] == "producer" and message["id"]
    assert message["id"] in capsys.readouterr().out


def envelope(source: str, key: str, **item: Any) -> dict[str, Any]:
    return {
        "source": source,
        "appId": "app",
        "channel": "chat:lobby",
        "site": "test",
        "ruleId": "chat",
        "timestamp": 1,
        key: [{"id": "conn:0:0", "timestamp": 1, **item}],
    }


@pytest.fixture
def published() -> list[tuple[Any, ...]]:
    return []


def record(calls: list[tuple[Any, ...]]) -> Any:
    def publish(channel: str, name: str, data: Any, **options: Any) -> None:
        calls.append((channel, name, data))

    return publish


@pytest.mark.parametrize(
    ("raw", "reply"),
    [
        (envelope("channel.presence", "presence", action=int(PresenceAction.ENTER),
                  clientId="alice"), "system"),
        (envelope("channel.presence", "presence", action=int(PresenceAction.LEAVE),
                  clientId="alice"), "system"),
        (envelope("channel.presence", "presence", action=int(PresenceAction.UPDATE),
                  clientId="alice"), None),
        (envelope("channel.message", "messages", name="text", data='{"text":"/ping"}',
                  encoding="json", clientId="bob"), "pong"),
        (envelope("channel.message", "messages", name="text", data="hello"), None),
        (envelope("channel.message", "messages", name="pong", data="/ping"), None),
    ],
)  # fmt: skip
def test_chat_worker_reactions(
    raw: dict[str, Any], reply: str | None, published: list[tuple[Any, ...]]
) -> None:
    from examples import chat_worker

    [event] = decode_envelope(raw)
    assert chat_worker.react(event, publish=record(published)) == reply
    if reply:
        assert published == [("chat:lobby", reply, published[0][2])]
        assert "alice" in json.dumps(published[0][2]) or reply == "pong"
    else:
        assert published == []


def test_chat_worker_stream_handler_and_celery_task(
    monkeypatch: pytest.MonkeyPatch, published: list[tuple[Any, ...]]
) -> None:
    from examples import chat_worker

    monkeypatch.setattr(chat_worker.producers, "publish", record(published))
    raw = envelope("channel.presence", "presence", action=int(PresenceAction.ENTER), clientId="c")
    entry = StreamEntry("ably:chat", "1-0", {"envelope": json.dumps(raw)})
    chat_worker.handle_stream_event(entry)
    assert published == [("chat:lobby", "system", {"text": "welcome, c"})]
    assert chat_worker.handle_event.name == "chat.handle_event"
    assert "chat.handle_event" in chat_worker.app.tasks
    assert "ably.publish" in chat_worker.app.tasks


def test_token_endpoint_signs_token_requests(emulator: Emulator) -> None:
    pytest.importorskip("flask")
    from examples import token_server

    rest = AblyRest(key=emulator.root_key, endpoint="127.0.0.1", port=emulator.port, tls=False)
    app = token_server.create_app(rest)
    app.secret_key = "test-only"
    client = app.test_client()
    assert client.get("/ably/token").status_code == 401
    with client.session_transaction() as session:
        session["user_id"] = "erin"
    response = client.get("/ably/token")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    secret = emulator.root_key.split(":")[1]
    assert secret not in response.get_data(as_text=True)
    request = TokenRequest.from_dict(body)
    assert request.client_id == "erin" and request.verify(secret)
    # A browser-like client exchanges it for a token with the chat capability only.
    browser = AblyRest(
        auth_callback=lambda _params: body, endpoint="127.0.0.1", port=emulator.port, tls=False
    )
    details = browser.auth.authorize()
    assert details.client_id == "erin"
    capability = json.loads(details.capability or "{}")
    assert {k: sorted(v) for k, v in capability.items()} == {
        k: sorted(v) for k, v in token_server.CHAT_CAPABILITY.items()
    }
