"""Fakes for daemon tests: in-memory checkpoints, a manual executor, a config builder."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any

from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.config import BridgeConfig, parse_config

ENV = {"ABLY_KEY": "app.key:secret"}

BASE: dict[str, Any] = {
    "redis": {"url": "memory://"},
    "health": {"port": 0},
    "delivery": {
        "buffer_size": 50,
        "batch_size": 10,
        "retry": {"initial": 1.0, "max_delay": 2.0, "jitter": 0},
    },
    "routes": [
        {
            "id": "r1",
            "channels": ["ch1", "ch2"],
            "sources": ["message", "presence", "lifecycle"],
            "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
        }
    ],
}


def make_config(**overrides: Any) -> BridgeConfig:
    raw = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_config(raw, dict(ENV))


class MemoryCheckpoints:
    """CheckpointStore semantics (forward-only advances) in a dict."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Position] = {}
        self.watermarks: dict[str, int] = {}
        self.fail = False

    def load(self, route_id: str, channel: str) -> Position | None:
        if self.fail:
            raise ConnectionError("redis down")
        return self.data.get((route_id, channel))

    def advance(self, route_id: str, channel: str, position: Position) -> bool:
        if self.fail:
            raise ConnectionError("redis down")
        cur = self.data.get((route_id, channel))
        if cur is not None:
            if position.serial and cur.serial:
                if position.serial <= cur.serial:
                    return False
            elif position.timestamp < cur.timestamp or (
                position.timestamp == cur.timestamp and position.id == cur.id
            ):
                return False
        self.data[(route_id, channel)] = position
        return True

    def load_watermark(self, scope: str) -> int | None:
        if self.fail:
            raise ConnectionError("redis down")
        return self.watermarks.get(scope)

    def raise_watermark(self, scope: str, ms: int) -> bool:
        if self.fail:
            raise ConnectionError("redis down")
        if ms <= self.watermarks.get(scope, -1):
            return False
        self.watermarks[scope] = ms
        return True

    def advance_many(self, route_id: str, positions: Mapping[str, Position]) -> dict[str, bool]:
        return {ch: self.advance(route_id, ch, pos) for ch, pos in positions.items()}


class ManualExecutor(Executor):
    """Holds jobs until the test runs them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.jobs.append((fn, args, future))
        return future

    def run_all(self) -> int:
        jobs, self.jobs = self.jobs, []
        for fn, args, future in jobs:
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
        return len(jobs)
