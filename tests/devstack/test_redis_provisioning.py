"""Redis provisioning: clear errors when there is no Redis, and our own redis-server's life."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import redis

from ably_bridge.bridge.redis_connect import open_redis
from ably_bridge.devstack.redis_server import (
    INSTALL_HINT,
    RedisUnavailable,
    free_port,
    ping,
    provision,
)
from ably_bridge.devstack.stack import Console, DevOptions, DevStack
from tests.cluster_support import LocalCluster

from .conftest import clean_env, cluster_keys


def test_no_url_and_no_redis_server_on_path_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RedisUnavailable) as info:
        provision(None, run_id="r", log_dir=tmp_path)
    message = str(info.value)
    assert "redis-server" in message and "REDIS_URL" in message
    assert "apt-get install redis-server" in message
    assert INSTALL_HINT in message


def test_a_url_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    url = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailable) as info:
        provision(url, run_id="r", log_dir=tmp_path)
    message = str(info.value)
    assert "does not answer" in message
    assert "topsecret" not in message and "***" in message


def test_ping_reports_bad_urls() -> None:
    assert ping("http://nope") is not None
    assert ping(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5) is not None


def test_dev_exits_1_with_the_message_when_there_is_no_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    out, err = io.StringIO(), io.StringIO()
    stack = DevStack(
        DevOptions(port=0, json=True),
        env=clean_env({"PATH": str(tmp_path)}),
        console=Console(True, out, err),
    )
    assert stack.run() == 1
    assert "apt-get install redis-server" in err.getvalue()
    assert '"event": "error"' in out.getvalue()
    assert not stack.log_dir.exists()  # nothing ran, so the temp dir is gone


def test_own_redis_server_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on the PATH")
    dev = provision(None, run_id="r", log_dir=tmp_path)
    try:
        assert dev.server is not None and dev.server.running()
        assert ping(dev.layout.data_url) is None and ping(dev.layout.broker_url) is None
        assert dev.layout.prefix == "ably-dev"
        client = redis.Redis.from_url(dev.layout.data_url)
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        client.close()
    finally:
        dev.close()
    assert dev.server.exited() is not None
    assert ping(dev.layout.data_url, timeout=0.5) is not None


def test_busy_emulator_port_exits_1_and_stops_the_redis_server(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on the PATH")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out, err = io.StringIO(), io.StringIO()
        stack = DevStack(
            DevOptions(port=port, log_dir=tmp_path / "logs"),
            env=clean_env(),
            console=Console(False, out, err),
        )
        assert stack.run() == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.getvalue()
    assert "--port 0" in err.getvalue()
    assert stack.redis is not None and stack.redis.server is not None
    assert stack.redis.server.exited() is not None


def test_a_cluster_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    url = f"redis+cluster://:topsecret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/"
    with pytest.raises(RedisUnavailable) as info:
        provision(url, run_id="r", log_dir=tmp_path)
    message = str(info.value)
    assert "does not answer" in message
    assert "topsecret" not in message and "***" in message
    assert not (tmp_path / "redis.log").exists()  # no broker started for a dead cluster


def test_a_cluster_without_redis_server_on_path_says_the_broker_needs_one(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    with pytest.raises(RedisUnavailable) as info:
        provision(redis_cluster.url, run_id="r", log_dir=tmp_path, which=lambda _name: None)
    message = str(info.value)
    assert "Celery broker" in message and "no cluster transport" in message
    assert "apt-get install redis-server" in message


def test_a_cluster_gets_the_data_and_a_redis_server_of_ours_the_broker(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The run's keys (plain and hash-tagged) go to the cluster and are removed; the
    user's keys stay; the broker is a redis-server of the run, stopped on close."""
    user = open_redis(redis_cluster.url)
    user.set("user:key", "mine")
    user.xadd("{user}:chat", {"mine": "1"})
    before = cluster_keys(redis_cluster)
    dev = provision(redis_cluster.url, run_id="c1", log_dir=tmp_path)
    try:
        layout = dev.layout
        assert layout.data_url == redis_cluster.url and not layout.owned_redis
        assert layout.prefix == "ably-dev:c1" and layout.queue == "ably-dev-c1"
        assert dev.server is not None and dev.server.running() and dev.broker_started
        assert layout.broker_url.endswith("/0") and "cluster" not in layout.broker_url
        assert ping(layout.broker_url) is None
        assert "removed on exit" in dev.description
        user.xadd(layout.stream_key, {"e": "1"})
        user.set("{ably-dev:c1}:checkpoint:chat", "1")  # the bridge's tagged control keys
        user.set("ably-dev:c1:task:done:{abc}", "1")  # the worker guard's marks
        assert len(cluster_keys(redis_cluster) - before) == 3
    finally:
        dev.close()
    assert dev.server.exited() is not None
    assert cluster_keys(redis_cluster) == before
    assert user.get("user:key") == b"mine" and user.xlen("{user}:chat") == 1
    user.delete("user:key", "{user}:chat")
    user.close()
