"""Coalesced publishes: few tasks, each message once, ids fixed at enqueue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.emulator.server import Emulator
from ably_bridge.errors import AblyException
from tests.support.wait import eventually
from tests.workers.conftest import rest_client, running_worker, unique
from workers import WorkerSettings
from workers.coalesce import Coalescer

TIMEOUT = 30


def history_ids(emulator: Emulator, key: str, channel: str) -> list[str]:
    with rest_client(emulator, key) as rest:
        return [str(m.id) for m in rest.channels.get(channel).history(direction="forwards")]


def test_one_channel_and_several_go_out_as_few_tasks_each_id_once(
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    key = ably_app["root_key"]
    single = unique("co1")
    many = [unique(f"co{i}") for i in range(3)]
    with running_worker(make_settings("redis")) as app:
        with Coalescer(app, window=0.2) as coalescer:
            first = [coalescer.publish(single, "n", str(i)) for i in range(30)]
        assert coalescer.tasks_sent < 5 and coalescer.messages_sent == 30
        with Coalescer(app, window=0.2) as coalescer:
            spread = [coalescer.publish(many[i % 3], "n", str(i)) for i in range(30)]
        assert coalescer.tasks_sent < 5
        expected = [i for r in first for i in r.message_ids]
        eventually(lambda: history_ids(emulator, key, single) == expected, TIMEOUT, "one channel")
        for channel in many:
            ids = [i for r in spread if r.channel == channel for i in r.message_ids]
            eventually(
                lambda c=channel, i=ids: history_ids(emulator, key, c) == i,  # type: ignore[misc]
                TIMEOUT,
                f"channel {channel}",
            )
    assert all(r.task_id is not None for r in first + spread)
    assert len(set(expected)) == 30


def test_a_buffer_is_sent_when_its_window_ends_or_it_is_full(
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    channel = unique("cofull")
    with running_worker(make_settings("redis")) as app:
        coalescer = Coalescer(app, window=0.05, max_bytes=50_000)
        try:
            lone = coalescer.publish(channel, "lone", "x")
            assert lone.wait_sent(TIMEOUT), "the window passed and nothing was sent"
            # Five 20 kB messages do not fit one publish: sent in several tasks, none refused.
            big = [coalescer.publish(channel, "big", "y" * 20_000) for _ in range(5)]
        finally:
            coalescer.close()
        assert coalescer.tasks_sent >= 3
        ids = lone.message_ids + [i for r in big for i in r.message_ids]
        eventually(
            lambda: history_ids(emulator, ably_app["root_key"], channel) == ids,
            TIMEOUT,
            "every message once",
        )


def test_a_batch_refused_with_503_is_retried_and_each_id_kept_once(
    make_settings: Callable[..., WorkerSettings],
    emulator: Emulator,
    ably_app: dict[str, Any],
) -> None:
    channels = [unique("co503a"), unique("co503b")]
    with running_worker(make_settings("redis")) as app:
        emulator.faults.fail_rest(
            count=2, status=503, code=50300, app_id=ably_app["app_id"], path_prefix="/messages"
        )
        with Coalescer(app, window=0.2) as coalescer:
            receipts = [coalescer.publish(channels[i % 2], "n", {"i": i}) for i in range(10)]
        assert coalescer.tasks_sent == 1
        for channel in channels:
            ids = [i for r in receipts if r.channel == channel for i in r.message_ids]
            eventually(
                lambda c=channel, i=ids: history_ids(emulator, ably_app["root_key"], c) == i,  # type: ignore[misc]
                TIMEOUT,
                f"channel {channel} after the 503s",
            )


def test_bad_use_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="window"):
        Coalescer(object(), window=0)
    coalescer = Coalescer(object(), window=1)
    with pytest.raises(ValueError, match="channel"):
        coalescer.publish("", "n", "x")
    with pytest.raises(ValueError, match="nothing"):
        coalescer.publish("c", messages=[])
    with pytest.raises(AblyException) as info:
        coalescer.publish("c", "n", 5)
    assert info.value.code == 40013
    with pytest.raises(AblyException) as info:
        coalescer.publish("c", messages=[{"name": 5}])
    assert info.value.code == 40003 and "messages[0].name" in info.value.message
    assert coalescer.messages_sent == 0 and coalescer.tasks_sent == 0
    coalescer.close()
    with pytest.raises(RuntimeError, match="closed"):
        coalescer.publish("c", "n", "x")
