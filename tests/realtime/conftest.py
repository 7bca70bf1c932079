"""Fixtures for realtime client tests against the emulator, in JSON and msgpack.

Every test using ``make_client`` runs twice (``fmt`` is parametrized). Timeouts
are shortened through client options and the emulator config; tests wait with
deadlines (:func:`eventually`, ``Collector.wait_for``), never sleep to let time pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.realtime import AblyRealtime
from ably_bridge.realtime.callback_pool import CallbackPool

FORMATS = ["json", "msgpack"]

MakeClient = Callable[..., AblyRealtime]


@pytest.fixture
def dispatcher() -> Iterator[CallbackPool]:
    """A private callback pool of four threads, closed (its queued work cancelled) after."""
    d = CallbackPool(max_workers=4)
    yield d
    d.close(wait=True, cancel=True)


@pytest.fixture
def app(emulator: Emulator) -> Iterator[dict[str, Any]]:
    """A fresh app per test, so faults aimed at it hit only this test's connections."""
    created = emulator.create_app(
        {
            "keys": [
                {},
                {"capability": '{"*":["subscribe","publish","presence","history"]}'},
            ],
            "namespaces": [{"id": "persisted", "persisted": True}],
        }
    )
    yield created
    emulator.delete_app(created["appId"])


@pytest.fixture
def key(app: dict[str, Any]) -> str:
    return str(app["keys"][0]["keyStr"])


@pytest.fixture
def app_id(app: dict[str, Any]) -> str:
    return str(app["appId"])


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client_options(emulator: Emulator, fmt: str, **options: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "endpoint": emulator.host,
        "port": emulator.port,
        "tls": False,
        "use_binary_protocol": fmt == "msgpack",
        "realtime_request_timeout": 2.0,
        "disconnected_retry_timeout": 0.3,
        "suspended_retry_timeout": 0.5,
        "channel_retry_timeout": 0.3,
        "http_request_timeout": 3.0,
    }
    base.update(options)
    return base


@pytest.fixture
def make_client(emulator: Emulator, fmt: str, key: str) -> Iterator[MakeClient]:
    """``make_client(**options)`` -> an AblyRealtime on the emulator, closed after the test."""
    clients: list[AblyRealtime] = []

    def make(**options: Any) -> AblyRealtime:
        if not {"key", "token", "token_details", "auth_callback", "auth_url"} & set(options):
            options["key"] = key
        client = AblyRealtime(**client_options(emulator, fmt, **options))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2.0)


class Collector:
    """A thread-safe listener that records what it is called with."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Block until at least ``count`` items arrived; return them all."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.items) >= count, timeout)
            if not ok:
                raise AssertionError(f"got {len(self.items)} of {count} items: {self.items!r}")
            return list(self.items)

    def wait_until(self, check: Callable[[list[Any]], Any], timeout: float = 5.0) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: check(self.items), timeout)
            if not ok:
                raise AssertionError(f"condition not met; items: {self.items!r}")
            return list(self.items)
