"""``ably-bridge dev`` options and the dev worker's task body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def test_help_says_what_a_cluster_url_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens too
    assert "redis+cluster://" in text
    assert "aredis-serverfromPATHisstartedfortheCelerybrokeronly" in text


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
        ["dev", "--duration", "nan"],
        ["dev", "--duration", "inf"],
        ["dev", "--redis-url", "redis://h/0", "--redis-url-file", "/tmp/u"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


@pytest.mark.parametrize(
    "url", ["redis://:pw-9f3e@h:1/0", "redis://h:1/0?password=pw-9f3e", "rediss://u:pw-9f3e@h/0"]
)
def test_a_password_on_the_command_line_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ps shows every user a command line: the URL must come from REDIS_URL or a file."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["dev", "--redis-url", url])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "visible to every user in ps" in err and "--redis-url-file" in err
    assert "pw-9f3e" not in err


def test_the_url_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ably_bridge.devstack import cli, stack

    seen: list[Any] = []
    monkeypatch.setattr(stack, "run_dev", lambda options: seen.append(options) or 0)
    url_file = tmp_path / "redis.url"
    url_file.write_text("redis://:pw-9f3e@127.0.0.1:1/0\n")
    args = build_parser().parse_args(["dev", "--redis-url-file", str(url_file)])
    assert cli.run(args) == 0
    assert seen[0].redis_url == "redis://:pw-9f3e@127.0.0.1:1/0"


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe"])
def test_an_unusable_url_file_is_a_clear_error(
    content: bytes | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ably_bridge.devstack import cli

    url_file = tmp_path / "redis.url"
    if content is not None:
        url_file.write_bytes(content)
    args = build_parser().parse_args(["dev", "--redis-url-file", str(url_file)])
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("ably-bridge dev: ") and "--redis-url-file" in err
    assert "Traceback" not in err


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
