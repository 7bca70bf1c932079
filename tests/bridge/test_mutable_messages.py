"""Mutable messages through the whole bridge: emulator -> bridge -> Redis Stream and Celery.

A message in a ``mutableMessages`` namespace is published, updated, appended
to and deleted over REST (RSL15); each operation reaches subscribers as a
MESSAGE with the original ``id`` and ``serial``, its ``action`` (TM2j) and its
``version`` (TM2s). The bridge must forward every operation as an event of its
own (not drop it as a duplicate of the create), on the realtime wire in JSON
and in msgpack, to a real Redis Stream and a real Celery worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis

from ably_bridge.emulator import Emulator
from ably_bridge.envelope import decode_envelope, envelope_from_fields
from ably_bridge.rest.client import AblyRest
from tests.bridge.test_daemon_integration import (
    Running,
    WorkerQuiet,
    bridge_config,
    rest_for,
    stream_events,
)
from tests.support.services import REDIS_URL, redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

CHANNEL = "mutable:chat"


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    """An app whose ``mutable`` namespace takes message updates, deletes and appends."""
    created = emulator.create_app(
        {"keys": [{}], "namespaces": [{"id": "mutable", "mutableMessages": True}]}
    )
    yield created
    emulator.delete_app(created["appId"])


def operate(rest: AblyRest, serial: str, body: dict[str, Any]) -> str:
    """PATCH one operation onto the message ``serial`` (RSL15b); its version serial."""
    path = f"/channels/{quote(CHANNEL, safe='')}/messages/{quote(serial, safe='')}"
    answer = rest.request("PATCH", path, body=body)
    assert answer.success, answer.error_message
    (result,) = answer.items
    return str(result["versionSerial"])


def publish(rest: AblyRest, msg_id: str, data: str) -> str:
    path = f"/channels/{quote(CHANNEL, safe='')}/messages"
    answer = rest.request("POST", path, body={"id": msg_id, "name": "chat", "data": data})
    assert answer.success, answer.error_message
    return str(answer.items[0]["serials"][0])


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_each_operation_reaches_the_stream_and_celery_once(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, wire: str
) -> None:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    from workers.guard import WorkerGuard

    queue = f"{prefix}:celery"
    worker_app = Celery(f"bridge-mutable-{wire}", broker=REDIS_URL, set_as_current=False)
    worker_app.conf.update(
        task_serializer="json", accept_content=["json"], result_backend=None, broker_heartbeat=0
    )
    guard = WorkerGuard(redis.Redis.from_url(REDIS_URL), prefix=prefix)
    ran = f"{prefix}:ran"
    task_name = f"bridge_mutable.record.{wire}"
    quiet = WorkerQuiet(worker_app, rclient, prefix, task_name)

    @worker_app.task(bind=True, name=task_name)  # type: ignore[untyped-decorator]
    def record(self: Any, envelope: dict[str, Any]) -> None:
        (event,) = decode_envelope(envelope)
        with quiet.running(), guard.once(self.request.id) as first:
            if first:
                version = (event.version or {}).get("serial", "")
                rclient.rpush(ran, f"{event.action_name}|{event.data}|{version}")

    stream = f"{prefix}:s"
    routes = [
        {
            "id": "edits",
            "channels": [CHANNEL],
            "targets": [
                {"type": "celery", "task": task_name, "queue": queue},
                {"type": "redis_stream", "key": stream},
            ],
        },
        {
            "id": "deletes",
            "channels": [CHANNEL],
            "actions": ["message.delete"],
            "targets": [{"type": "redis_stream", "key": f"{prefix}:deletes", "layout": "flat"}],
        },
    ]
    config = bridge_config(
        emulator, key, prefix, routes=routes, env={"CELERY_BROKER_URL": REDIS_URL},
        ably={"endpoint": "127.0.0.1", "port": emulator.port, "tls": False,
              "use_binary_protocol": wire == "msgpack"},
    )  # fmt: skip
    rest = rest_for(emulator, key)
    try:
        with start_worker(
            worker_app, pool="threads", concurrency=2, perform_ping_check=False, queues=[queue]
        ):
            with Running(config) as run:
                run.wait_live()
                serial = publish(rest, "m-1", "Hello")
                edited = operate(rest, serial, {"action": 1, "data": "Hi",
                                                "version": {"description": "typo"}})  # fmt: skip
                appended = operate(rest, serial, {"action": 5, "data": "!"})
                deleted = operate(rest, serial, {"action": 2})
                eventually(lambda: len(stream_events(rclient, stream)) >= 4, what="4 entries")
                eventually(lambda: rclient.llen(ran) >= 4, timeout=30, what="4 tasks")
                eventually(lambda: rclient.xlen(f"{prefix}:deletes") >= 1, what="the delete")
            quiet.wait(queue)  # a duplicate task, if any, has run by now
    finally:
        rest.close()
        for k in rclient.scan_iter(match=f"_kombu.binding.{queue}*"):
            rclient.delete(k)
    events = [decode_envelope(e)[0] for e in stream_events(rclient, stream)]
    assert [e.action_name for e in events] == [
        "message.create", "message.update", "message.append", "message.delete",
    ]  # fmt: skip
    assert {e.id for e in events} == {"m-1"} and {e.serial for e in events} == {serial}
    assert [(e.version or {}).get("serial") for e in events] == [
        serial, edited, appended, deleted,
    ]  # fmt: skip
    assert events[1].data == "Hi" and events[1].version is not None
    assert events[1].version["description"] == "typo"
    assert events[2].data == "!"  # an append carries only what it adds
    assert len({e.dedup_key for e in events}) == 4 and events[0].dedup_key == "m:m-1"
    (only,) = [
        decode_envelope(envelope_from_fields(fields))[0]
        for _, fields in rclient.xrange(f"{prefix}:deletes")
    ]
    assert (only.action_name, only.rule_id, only.version) == (
        "message.delete", "deletes", events[3].version,
    )  # fmt: skip
    ran_items = sorted(v.decode() for v in rclient.lrange(ran, 0, -1))
    assert ran_items == sorted(
        [
            f"message.create|Hello|{serial}",
            f"message.update|Hi|{edited}",
            f"message.append|!|{appended}",
            f"message.delete|None|{deleted}",
        ]
    )


@pytest.mark.parametrize("lookback", [0, 600])
def test_a_restart_backfills_every_version_of_a_message_changed_in_the_gap(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, lookback: int
) -> None:
    """History lists a changed message once, as its latest version, at its original
    place; the backfill asks for its versions (RSL14) so none is lost, none doubled.
    A message published before the gap and changed in it is found only with
    ``delivery.operations_lookback``."""
    stream = f"{prefix}:s"
    routes = [{"id": "edits", "channels": [CHANNEL],
               "targets": [{"type": "redis_stream", "key": stream}]}]  # fmt: skip
    config = bridge_config(
        emulator, key, prefix, routes=routes,
        delivery={"retry": {"initial": 0.1, "max_delay": 0.5, "jitter": 0}, "drain_timeout": 5,
                  "operations_lookback": lookback},
    )  # fmt: skip
    rest = rest_for(emulator, key)

    def seen() -> list[tuple[str, str, Any]]:
        events = [decode_envelope(e)[0] for e in stream_events(rclient, stream)]
        return [(e.id or "", e.action_name or "", e.data) for e in events]

    try:
        with Running(config) as run:
            run.wait_live()
            before = publish(rest, "m-1", "one")
            eventually(lambda: len(seen()) == 1, what="the live create")
        # The gap: m-2 is published and changed; m-1, delivered before, is changed too.
        operate(rest, before, {"action": 1, "data": "ONE"})
        second = publish(rest, "m-2", "two")
        operate(rest, second, {"action": 1, "data": "TWO"})
        operate(rest, second, {"action": 5, "data": "!"})
        publish(rest, "m-3", "three")
        with Running(config) as run:
            run.wait_live()
            publish(rest, "m-4", "four")  # live, after the attach
            eventually(lambda: len(seen()) >= 6 + bool(lookback), what="the gap and m-4")
            assert run.app.metrics.backfilled.value() == 4 + bool(lookback)
        with Running(config) as run:  # a second restart replays nothing
            run.wait_live()
            publish(rest, "m-5", "five")
            eventually(lambda: len(seen()) >= 7 + bool(lookback), what="m-5")
    finally:
        rest.close()
    # Without a look-back m-1's update in the gap is not in history after the
    # checkpoint: see docs/delivery-guarantees.md ("Message updates, deletes ...").
    update_of_m1 = [("m-1", "message.update", "ONE")] if lookback else []
    assert seen() == [
        ("m-1", "message.create", "one"),
        *update_of_m1,
        ("m-2", "message.create", "two"),
        ("m-2", "message.update", "TWO"),
        ("m-2", "message.update", "TWO!"),  # the append, as its stored version
        ("m-3", "message.create", "three"),
        ("m-4", "message.create", "four"),
        ("m-5", "message.create", "five"),
    ]


def test_each_new_annotation_summary_is_forwarded_even_when_an_earlier_one_comes_back(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    """A like added, taken back and added again: three summaries, the third equal to
    the first; all three reach the stream (a snapshot state coming back is news)."""
    stream = f"{prefix}:s"
    routes = [{"id": "likes", "channels": [CHANNEL], "actions": ["message.summary"],
               "targets": [{"type": "redis_stream", "key": stream}]}]  # fmt: skip
    config = bridge_config(emulator, key, prefix, routes=routes)
    rest = rest_for(emulator, key)

    def like(serial: str, action: int) -> None:
        body = [{"action": action, "type": "like:flag.v1", "clientId": "amy"}]
        path = f"/channels/{quote(CHANNEL, safe='')}/messages/{quote(serial, safe='')}/annotations"
        answer = rest.request("POST", path, body=body)
        assert answer.success, answer.error_message

    try:
        with Running(config) as run:
            run.wait_live()
            serial = publish(rest, "m-1", "likeable")
            for n, action in enumerate((0, 1, 0), start=1):  # add, delete, add
                like(serial, action)
                eventually(lambda n=n: len(stream_events(rclient, stream)) == n, what=f"{n}")
    finally:
        rest.close()
    events = [decode_envelope(e)[0] for e in stream_events(rclient, stream)]
    assert [e.action_name for e in events] == ["message.summary"] * 3
    summaries = [(e.annotations or {}).get("summary") for e in events]
    assert summaries[0] == summaries[2] and summaries[1] == {}  # taken back, then again
    assert summaries[0]["like:flag.v1"]["clientIds"] == ["amy"]
    assert len({e.dedup_key for e in events}) == 3 and {e.serial for e in events} == {serial}
