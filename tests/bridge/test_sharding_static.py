"""Static sharding (sharding_static.py) and picking a mode (sharding.build_shards)."""

from __future__ import annotations

import pytest

from ably_bridge.bridge.config import ConfigError, parse_config
from ably_bridge.bridge.sharding import build_shards
from ably_bridge.bridge.sharding_static import StaticShards, static_index
from tests.bridge.daemon_fakes import BASE, make_config

S = 64


def test_static_shards_partition_the_space() -> None:
    views = [StaticShards(i, 3, S) for i in range(3)]
    owned = [set(v.tokens()) for v in views]
    assert set().union(*owned) == set(range(S)) and sum(map(len, owned)) == S
    assert views[0].fence("x") is None and views[0].readiness() == []
    with pytest.raises(ValueError, match="impossible"):
        StaticShards(3, 3, S)


def test_static_index_from_a_statefulset_host_name() -> None:
    assert static_index("ably-bridge-2") == 2
    assert static_index("bridge") is None


def test_static_mode_from_the_environment() -> None:
    env = {"ABLY_BRIDGE_SHARDING": "static", "ABLY_BRIDGE_REPLICA_INDEX": "1",
           "ABLY_BRIDGE_REPLICAS": "4", "ABLY_KEY": "app.key:secret"}  # fmt: skip
    config = parse_config(BASE, env)
    assert config.sharding.mode == "static"
    view = build_shards(config.sharding, None, "p")  # type: ignore[arg-type]
    assert isinstance(view, StaticShards) and (view.index, view.replicas) == (1, 4)
    with pytest.raises(ConfigError) as err:
        parse_config(BASE, {**env, "ABLY_BRIDGE_REPLICA_INDEX": "4"})
    assert "sharding.replica_index: must be < replicas (4)" in str(err.value)
    with pytest.raises(ConfigError):
        make_config(sharding={"mode": "static"})  # replicas missing
    assert make_config().sharding.enabled is False
