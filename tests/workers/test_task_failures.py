"""Task failures through a real worker: transient 503s are retried, 4xx fail fast.

Kept apart from test_tasks_emulator.py: two in-process workers on the Redis
broker must not run at the same time in one process (kombu's event loop is global).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.emulator.server import Emulator
from ably_bridge.protocol.models import Message
from tests.workers.conftest import rest_client, running_worker, unique
from workers import AblyTaskError, WorkerSettings, producers

TIMEOUT = 10


def history_items(emulator: Emulator, key: str, channel: str) -> list[Message]:
    with rest_client(emulator, key) as rest:
        return list(rest.channels.get(channel).history(direction="forwards"))


def test_publish_survives_five_503s_and_arrives_once(
    broker: str,
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    channel = unique("flaky")
    settings = make_settings(broker)
    with running_worker(settings) as app:
        emulator.faults.fail_rest(
            count=5, status=503, code=50300, path_prefix=f"/channels/{channel}"
        )
        receipt = producers.publish(channel, "n", "once", app=app)
        assert receipt.get(timeout=TIMEOUT)["messageIds"] == receipt.message_ids
    items = history_items(emulator, ably_app["root_key"], channel)
    assert [m.id for m in items] == receipt.message_ids
    assert all(
        f.get("path_prefix") != f"/channels/{channel}"
        for f in emulator.faults.describe()["restFailures"]
    )


@pytest.mark.parametrize(
    ("case", "code"),
    [("bad_key", 40101), ("forbidden", 40160), ("oversized", 40009)],
)
def test_4xx_fails_fast_with_the_ably_code(
    case: str,
    code: int,
    make_settings: Callable[..., WorkerSettings],
    ably_app: dict[str, Any],
) -> None:
    key = ably_app["root_key"]
    if case == "bad_key":
        key = key.rsplit(":", 1)[0] + ":not-the-secret"
    elif case == "forbidden":
        key = ably_app["read_key"]
    data = "x" * 70_000 if case == "oversized" else "small"
    with running_worker(make_settings(ably_key=key)) as app:
        receipt = producers.publish(unique("fail"), "n", data, app=app)
        with pytest.raises(AblyTaskError) as info:
            receipt.get(timeout=TIMEOUT)
        assert receipt.result.state == "FAILURE"
    error = info.value
    assert error.code == code and 400 <= error.status_code < 500
    assert error.retryable is False
    assert "not-the-secret" not in str(error) and "not-the-secret" not in str(
        receipt.result.traceback
    )
    assert base64.b64encode(b"not-the-secret").decode() not in str(receipt.result.traceback)
