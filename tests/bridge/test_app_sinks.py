"""The sink pool of the bridge process (``SinkPool``): one sink per (kind, URL)."""

from __future__ import annotations

import copy

import pytest

from ably_bridge.bridge import app
from ably_bridge.bridge.app import SinkPool
from ably_bridge.bridge.metrics import BridgeMetrics
from ably_bridge.clock import FakeClock
from tests.bridge.daemon_fakes import make_config


def test_one_sink_per_kind_and_url_whatever_the_target_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    real = app.create_sink

    def counting(kind: str, url: str, options: object) -> object:
        made.append(kind)
        return real(kind, url, options)  # type: ignore[arg-type]

    monkeypatch.setattr(app, "create_sink", counting)
    config = make_config()
    pool = SinkPool(config, BridgeMetrics(), FakeClock(), target_cache_limit=1)
    target = config.routes[0].targets[0]
    first = pool(target)
    assert pool(target) is first  # (cached by target)
    twin = copy.deepcopy(target)  # another object with the same kind and URL
    assert pool(twin) is first  # (the cache was cleared past its bound)
    assert pool(target) is first
    assert made == [target.kind]
    assert pool.peek(twin) is first
    pool.close()
