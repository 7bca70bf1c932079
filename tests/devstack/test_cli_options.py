"""``ably-bridge dev`` options and the dev worker's task body."""

from __future__ import annotations

from typing import Any

import pytest

from ably_bridge.cli import build_parser
from workers.consumers import decode_envelope


def test_defaults() -> None:
    args = build_parser().parse_args(["dev"])
    assert args.port == 8080
    assert args.redis_url is None
    assert args.publisher is True
    assert args.duration is None
    assert args.summary_interval == 2.0
    assert args.json is False
    assert args.log_dir is None


def test_every_option() -> None:
    args = build_parser().parse_args(
        [
            "dev", "--port", "0", "--redis-url", "redis://h:1/2", "--no-publisher",
            "--duration", "15", "--summary-interval", "0.5", "--json", "--log-dir", "/tmp/x",
        ]
    )  # fmt: skip
    assert (args.port, args.redis_url, args.publisher) == (0, "redis://h:1/2", False)
    assert (args.duration, args.summary_interval, args.json) == (15.0, 0.5, True)
    assert str(args.log_dir) == "/tmp/x"


@pytest.mark.parametrize(
    "argv",
    [
        ["dev", "--duration", "0"],
        ["dev", "--summary-interval", "-1"],
        ["dev", "--port", "70000"],
        ["dev", "--port", "http"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


class _FakePipe:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def hincrby(self, *args: Any) -> None:
        self.calls.append(("hincrby", *args))

    def sadd(self, *args: Any) -> None:
        self.calls.append(("sadd", *args))

    def execute(self) -> None:
        self.calls.append(("execute",))


class _FakeRedis:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def pipeline(self, transaction: bool = True) -> _FakePipe:
        return _FakePipe(self.calls)


def test_dev_task_records_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from ably_bridge.devstack import worker

    assert worker.app.tasks[worker.chat_event.name] is not None
    assert worker.chat_event.name == "dev.chat_event"
    (event,) = decode_envelope(
        {
            "source": "channel.message",
            "appId": "dev",
            "channel": "chat:lobby",
            "site": "ably-dev",
            "ruleId": "chat",
            "timestamp": 1,
            "messages": [{"id": "m1:0", "name": "text", "data": {"text": "hi"}}],
        }
    )
    fake = _FakeRedis()
    worker.record(event, fake)  # type: ignore[arg-type]
    assert fake.calls == [
        ("hincrby", worker.layout.tasks_key, "message", 1),
        ("sadd", worker.layout.handled_key, "m1:0"),
        ("execute",),
    ]
