"""Fixtures for REST tests: a mock transport, a FakeClock and a client factory."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from ably_bridge.clock import FakeClock
from ably_bridge.rest import AblyRest
from ably_bridge.transports.mock_http import MockHttpTransport

KEY = "appId.keyId:keySecret"
PRIMARY = "main.realtime.ably.net"

MakeRest = Callable[..., AblyRest]


@pytest.fixture
def mock() -> MockHttpTransport:
    return MockHttpTransport()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_rest(mock: MockHttpTransport, clock: FakeClock) -> MakeRest:
    """``make_rest(**options)`` -> AblyRest on the mock transport and fake clock."""

    def make(first: Any = None, **options: Any) -> AblyRest:
        options.setdefault("clock", clock)
        if first is None and not {
            "key",
            "token",
            "token_details",
            "auth_callback",
            "auth_url",
        } & set(options):
            options["key"] = KEY
        return AblyRest(first, transport=mock, **options)

    return make


def bearer_token(header: str) -> str:
    """The token inside an ``Authorization: Bearer <base64>`` header."""
    assert header.startswith("Bearer ")
    return base64.b64decode(header.removeprefix("Bearer ")).decode()
