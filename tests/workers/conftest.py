"""Fixtures for the worker helpers: the emulator, an Ably app with fixtures, brokers, workers.

Brokers: Redis DB 14 with a unique key prefix per worker, or RabbitMQ with a
unique queue (deleted afterwards). Retry delays are tuned to tens of ms.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from kombu.asynchronous import set_event_loop

from ably_bridge.emulator.server import Emulator
from ably_bridge.rest import AblyRest
from workers import RetryPolicy, WorkerSettings, create_app

REDIS_DB14 = "redis://127.0.0.1:6379/14"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
PRESENCE_CHANNEL = "presence-fixture"
STATS_FIXTURES = [
    {"intervalId": "2023-01-01:10:00", "all": {"messages": {"count": 5, "data": 500}}},
    {"intervalId": "2023-01-01:10:01", "all": {"messages": {"count": 7, "data": 700}}},
    {"intervalId": "2023-01-01:10:02", "all": {"messages": {"count": 11, "data": 1100}}},
]
FAST_RETRY = RetryPolicy(
    0.02, multiplier=2.0, max_delay=0.1, jitter=0.5, max_retries=8, rate_limit_delay=0.05
)


@pytest.fixture(scope="session")
def ably_app(emulator: Emulator) -> dict[str, Any]:
    """An emulator app: a root key, a subscribe-only key, presence and stats fixtures."""
    reply = emulator.create_app(
        {
            "keys": [
                {"capability": '{"*":["*"]}'},
                {"capability": '{"*":["subscribe","history","presence"]}'},
            ],
            "channels": [
                {
                    "name": PRESENCE_CHANNEL,
                    "presence": [
                        {"clientId": "alice", "data": "a"},
                        {"clientId": "bob", "data": {"role": "admin"}},
                        {"clientId": "carol", "data": "c"},
                    ],
                }
            ],
        }
    )
    keys = [k["keyStr"] for k in reply["keys"]]
    with rest_client(emulator, keys[0]) as rest:
        answer = rest.request("POST", "/stats", body=STATS_FIXTURES)
        assert answer.success, answer.error_message
    return {"app_id": reply["appId"], "root_key": keys[0], "read_key": keys[1]}


def rest_client(emulator: Emulator, key: str | None = None, **options: Any) -> AblyRest:
    if key is not None:
        options["key"] = key
    return AblyRest(endpoint="127.0.0.1", port=emulator.port, tls=False, **options)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(emulator: Emulator, ably_app: dict[str, Any]) -> Callable[..., WorkerSettings]:
    def make(broker: str = "redis", **changes: Any) -> WorkerSettings:
        tag = unique("abw")
        base = WorkerSettings(
            ably_key=ably_app["root_key"],
            client_options={
                "endpoint": "127.0.0.1",
                "port": emulator.port,
                "tls": False,
            },
            broker_url=REDIS_DB14 if broker == "redis" else AMQP_URL,
            result_backend=REDIS_DB14,
            retry=FAST_RETRY,
            queue=tag,
            redis_key_prefix=f"{tag}:",
            broker_timeout=5.0,
            visibility_timeout=5.0,
            restore_interval=1.0,
            dedup_redis_url=REDIS_DB14,
            dedup_prefix=tag,
            result_expires=600,
            budget_base_delay=0.02,
            budget_max_delay=0.2,
        )
        return base.replace(**changes)

    return make


def cleanup_broker(settings: WorkerSettings) -> None:
    """Remove what a test left in the brokers: prefixed Redis keys or the AMQP queue."""
    if settings.redis_broker:
        client = redis.Redis.from_url(REDIS_DB14)
        prefixes = [settings.redis_key_prefix, f"{settings.dedup_prefix}:"]
        for prefix in [p for p in prefixes if p]:
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)
        client.close()
    elif settings.queue:
        app = create_app("cleanup", settings, register=False)
        with contextlib.suppress(Exception), app.connection_for_write() as conn:
            conn.default_channel.queue_delete(settings.queue)
        app.close()


@contextlib.contextmanager
def running_worker(
    settings: WorkerSettings, prepare: Callable[[Any], None] | None = None, **worker_options: Any
) -> Iterator[Any]:
    """An in-process worker for ``settings``; yields the app.

    The threads pool: with solo, a retry on AMQP waits ~10 s for the event loop.
    """
    app = create_app(unique("app"), settings)
    if prepare is not None:
        prepare(app)  # register extra tasks before the worker starts
    worker_options.setdefault("pool", "threads")
    try:
        with start_worker(
            app,
            perform_ping_check=False,
            shutdown_timeout=20,
            loglevel=os.environ.get("ABW_LOGLEVEL", "WARNING"),
            **worker_options,
        ):
            yield app
    finally:
        app.close()
        set_event_loop(None)  # the next in-process worker must not inherit this one's hub
        cleanup_broker(settings)


@pytest.fixture(params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)
