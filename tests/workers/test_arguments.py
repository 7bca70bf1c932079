"""Bad task arguments fail as a 400-class Ably error naming the argument, never as 50000.

The checks run in the task before any Ably request: :func:`workers.arguments.bind`
directly, then each task through Celery's ``apply`` (the task body as a worker
runs it), then one task through a real worker and the Redis broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.errors import AblyException
from tests.workers.conftest import running_worker, unique
from workers import AblyTaskError, WorkerSettings, create_app
from workers.arguments import bind

BAD_CALLS: list[tuple[str, dict[str, Any], int, str]] = [
    ("ably.publish", {"channel": 123, "messages": [{"name": "a"}]}, 40003, "channel"),
    ("ably.publish", {"channel": "c", "messages": "abc"}, 40003, "messages"),
    ("ably.publish", {"channel": "c", "messages": [1]}, 40003, "messages[0]"),
    ("ably.publish", {"channel": "c", "messages": [{"name": 5}]}, 40003, "messages[0].name"),
    ("ably.publish", {"channel": "c", "messages": [{"id": 5}]}, 40003, "messages[0].id"),
    ("ably.publish", {"channel": "c", "messages": [{"extras": "x"}]}, 40003, "messages[0].extras"),
    ("ably.publish", {"channel": "c", "messages": [{}], "params": "x"}, 40003, "params"),
    ("ably.publish", {"channel": "c", "messages": [{}], "first_attempt_ms": "x"}, 40003,
     "first_attempt_ms"),
    ("ably.publish", {"channel": "c", "messages": [{}], "bogus": 1}, 40000, "bogus"),
    ("ably.publish", {"messages": [{}]}, 40000, "channel"),
    ("ably.publish", {"channel": "c"}, 40000, "messages"),
    ("ably.publish_batch", {"specs": "x"}, 40003, "specs"),
    ("ably.publish_batch", {"specs": [1]}, 40003, "specs[0]"),
    ("ably.publish_batch", {"specs": [{"channels": 5, "messages": [{}]}]}, 40003,
     "specs[0].channels"),
    ("ably.publish_batch", {"specs": [{"channels": ["a"], "messages": "x"}]}, 40003,
     "specs[0].messages"),
    ("ably.history", {"channel": "c", "limit": "abc"}, 40003, "limit"),
    ("ably.history", {"channel": "c", "start": "x"}, 40003, "start"),
    ("ably.history", {"channel": "c", "cursor": 5}, 40003, "cursor"),
    ("ably.history", {"channel": "c", "max_items": "x"}, 40003, "max_items"),
    ("ably.history", {"channel": "c", "bogus": 1}, 40000, "bogus"),
    ("ably.presence_get", {"channel": "c", "limit": "x"}, 40003, "limit"),
    ("ably.presence_get", {"channel": "c", "client_id": 5}, 40003, "client_id"),
    ("ably.stats", {"bogus": 5}, 40000, "bogus"),
    ("ably.stats", {"limit": 1.5}, 40003, "limit"),
    ("ably.time", {"x": 1}, 40000, "x"),
    ("ably.channel_status", {}, 40000, "channel"),
    ("ably.channel_status", {"channel": 5}, 40003, "channel"),
    ("ably.token_request", {"ttl": "x"}, 40003, "ttl"),
    ("ably.token_request", {"ttl": True}, 40003, "ttl"),
    ("ably.token_request", {"capability": 5}, 40003, "capability"),
    ("ably.token_request", {"client_id": 5}, 40003, "client_id"),
    ("ably.token_request", {"bogus": 5}, 40000, "bogus"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "kwargs", "code", "argument"), BAD_CALLS)
def test_bind_names_the_bad_argument(
    task: str, kwargs: dict[str, Any], code: int, argument: str
) -> None:
    with pytest.raises(AblyException) as info:
        bind(task, (), kwargs)
    assert info.value.code == code and info.value.status_code == 400
    assert argument in info.value.message


def test_bind_takes_positional_arguments_and_drops_nones() -> None:
    assert bind("ably.history", ("c",), {"limit": 5, "cursor": None}) == {
        "channel": "c",
        "limit": 5,
    }
    with pytest.raises(AblyException, match="twice"):
        bind("ably.history", ("c",), {"channel": "d"})
    with pytest.raises(AblyException, match="at most 1 positional"):
        bind("ably.channel_status", ("c", "d"), {})


@pytest.mark.parametrize(("task", "kwargs", "code", "argument"), BAD_CALLS)
def test_each_task_fails_with_the_argument_named(
    task: str,
    kwargs: dict[str, Any],
    code: int,
    argument: str,
    make_settings: Callable[..., WorkerSettings],
) -> None:
    app = create_app(unique("args"), make_settings(broker_url="memory://", result_backend=None))
    try:
        result = app.tasks[task].apply(kwargs=kwargs)
    finally:
        app.close()
    error = result.result
    assert result.state == "FAILURE"
    assert isinstance(error, AblyTaskError), repr(error)
    assert error.code == code and error.status_code == 400 and not error.retryable
    assert argument in error.message


def test_a_bad_argument_through_a_real_worker(
    make_settings: Callable[..., WorkerSettings],
) -> None:
    with running_worker(make_settings("redis")) as app:
        result = app.send_task("ably.history", kwargs={"channel": "c", "limit": "ten"})
        with pytest.raises(AblyTaskError) as info:
            result.get(timeout=30)
    assert info.value.code == 40003 and "limit" in info.value.message
