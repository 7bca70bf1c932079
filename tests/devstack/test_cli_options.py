"""``ably-bridge dev`` options and the dev worker's task body."""

from __future__ import annotations

import json

import pytest
import redis

from ably_bridge.cli import build_parser
from ably_bridge.devstack.handler import HandlerResult
from ably_bridge.devstack.layout import DevLayout
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


def test_dev_task_records_each_event_in_the_runs_redis(run_layout: DevLayout) -> None:
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
    layout = run_layout
    client = redis.Redis.from_url(layout.data_url)
    try:
        worker.record(event, client, HandlerResult("m:h", output="hi\n"), layout=layout)
        assert client.hgetall(layout.tasks_key) == {b"message": b"1"}
        assert client.smembers(layout.handled_key) == {b"m1:0"}
        stored = json.loads(client.hget(layout.results_key, "m1:0"))
        assert stored == {"handler": "m:h", "output": "hi\n", "returned": None, "error": None}
        worker.record(event, client, layout=layout)  # no handler: the task's name is kept
        assert json.loads(client.hget(layout.results_key, "m1:0"))["handler"] == "dev.chat_event"
        assert client.hgetall(layout.tasks_key) == {b"message": b"2"}
    finally:
        client.delete(layout.tasks_key, layout.handled_key, layout.results_key)
        client.close()


def test_the_handler_option() -> None:
    args = build_parser().parse_args(["dev", "--handler", "my_handler:handle"])
    assert args.user_handler == "my_handler:handle"
    assert callable(args.handler)  # the subcommand's own function is not shadowed
