"""The generated bridge configuration, the children's environment and the run's names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from ably_bridge.bridge.config import CeleryTarget, StreamTarget, check_config, load_config
from ably_bridge.devstack.config import child_env, sample_config, write_config
from ably_bridge.devstack.layout import TASK_NAME, DevLayout, redacted, with_db

KEY = "dev.root:dev-secret-not-for-production"


def test_owned_redis_layout_uses_db0_for_data_and_db1_for_the_broker() -> None:
    layout = DevLayout.for_owned_redis("redis://127.0.0.1:4567/0")
    assert layout.data_url == "redis://127.0.0.1:4567/0"
    assert layout.broker_url == "redis://127.0.0.1:4567/1"
    assert layout.stream_key == "ably-dev:chat"
    assert layout.queue == "ably-dev"


def test_shared_redis_layout_fences_the_run_off() -> None:
    layout = DevLayout.for_shared_redis("redis://:pw@example:6379/3", "abc123")
    assert layout.data_url == "redis://:pw@example:6379/3"
    assert layout.broker_url == "redis://:pw@example:6379/4"
    assert layout.prefix == "ably-dev:abc123"
    for key in (layout.stream_key, layout.tasks_key, layout.handled_key, layout.dead_letter_key):
        assert key.startswith("ably-dev:abc123:")
    assert layout.queue == "ably-dev-abc123"
    assert DevLayout.for_shared_redis("redis://h:1/15", "r").broker_url == "redis://h:1/0"
    assert DevLayout.for_shared_redis("redis://h:1", "r").broker_url == "redis://h:1/1"


def test_cluster_layout_puts_the_data_on_the_cluster_and_the_broker_on_our_server(
    tmp_path: Path,
) -> None:
    cluster = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"
    layout = DevLayout.for_cluster(cluster, "redis://127.0.0.1:4567/3", "abc123")
    assert layout.data_url == cluster and layout.broker_url == "redis://127.0.0.1:4567/0"
    assert layout.prefix == "ably-dev:abc123" and not layout.owned_redis
    assert layout.key_patterns == ["ably-dev:abc123:*", "{ably-dev:abc123}:*"]
    path = write_config(tmp_path, layout, emulator_port=8080, health_port=9999)
    env = child_env(layout, ably_key=KEY, emulator_port=8080, base={})
    assert env["REDIS_URL"] == cluster and env["ABLY_WORKER_DEDUP_REDIS_URL"] == cluster
    assert env["CELERY_BROKER_URL"] == layout.broker_url
    assert check_config(path, env={"ABLY_KEY": KEY}) == []  # the bridge takes the cluster URL
    config = load_config(path, env=env)
    assert config.key_prefix == "ably-dev:abc123"


def test_url_helpers() -> None:
    assert with_db("redis://u:p@h:1/2?x=1", 5) == "redis://u:p@h:1/5?x=1"
    assert with_db("unix:///run/redis.sock?db=2&x=1", 3) == "unix:///run/redis.sock?x=1&db=3"
    assert DevLayout.for_shared_redis("unix:///s.sock?db=2", "r").broker_url == (
        "unix:///s.sock?db=3"
    )
    assert redacted("redis://u:secret@h:1/2") == "redis://u:***@h:1/2"
    assert redacted("redis://h:1/2") == "redis://h:1/2"


def test_written_config_passes_check_config_with_and_without_the_env(tmp_path: Path) -> None:
    layout = DevLayout.for_owned_redis("redis://127.0.0.1:4567/0")
    path = write_config(tmp_path, layout, emulator_port=8080, health_port=9999)
    env = child_env(layout, ably_key=KEY, emulator_port=8080, base={"PATH": "/bin"})
    assert check_config(path, env=env) == []
    # The URLs have no password, so they are in the file too; only the key comes from the env.
    assert check_config(path, env={"ABLY_KEY": KEY}) == []
    config = load_config(path, env=env)
    assert config.app_id == "dev"
    assert config.ably.port == 8080 and config.ably.tls is False
    assert config.health.port == 9999 and config.health.host == "127.0.0.1"
    assert config.key_prefix == "ably-dev"
    assert config.dead_letter.stream == "ably-dev:deadletter"
    (route,) = config.routes
    assert set(route.sources) == {"message", "presence"}
    assert "chat:lobby" in route.channels and "chat:*" in route.channels
    kinds = {type(t): t for t in route.targets}
    stream, celery = kinds[StreamTarget], kinds[CeleryTarget]
    assert isinstance(stream, StreamTarget) and stream.key == "ably-dev:chat"
    assert isinstance(celery, CeleryTarget)
    assert celery.task == TASK_NAME and celery.queue == "ably-dev"
    assert "check-config" in path.read_text()


def test_a_url_with_a_password_stays_out_of_the_file(tmp_path: Path) -> None:
    layout = DevLayout.for_shared_redis("redis://:hunter2@127.0.0.1:6379/0", "run1")
    path = write_config(tmp_path, layout, emulator_port=8080, health_port=9999)
    assert "hunter2" not in path.read_text()
    raw = yaml.safe_load(path.read_text())
    assert "url" not in raw["redis"] and "celery" not in raw
    env = child_env(layout, ably_key=KEY, emulator_port=8080, base={})
    assert check_config(path, env=env) == []
    assert check_config(path, env={"ABLY_KEY": KEY}) != []  # needs REDIS_URL then


def test_sample_config_targets_both_sinks() -> None:
    layout = DevLayout.for_owned_redis("redis://127.0.0.1:1/0")
    config = sample_config(layout, emulator_port=1234, health_port=4321)
    targets = config["routes"][0]["targets"]
    assert [t["type"] for t in targets] == ["redis_stream", "celery"]
    assert config["routes"][0]["discover"]["prefixes"] == ["chat:"]


def test_child_env_drops_inherited_ably_redis_and_celery_settings() -> None:
    layout = DevLayout.for_owned_redis("redis://127.0.0.1:4567/0")
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "REDIS_URL": "redis://prod:6379/0",
        "CELERY_BROKER_URL": "amqp://prod//",
        "ABLY_KEY": "prod.key:secret",
        "ABLY_BRIDGE_KEY_PREFIX": "prod",
        "ABLY_WORKER_REDIS_KEY_PREFIX": "prod",
    }
    env = child_env(layout, ably_key=KEY, emulator_port=8080, base=base)
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert env["REDIS_URL"] == layout.data_url
    assert env["CELERY_BROKER_URL"] == layout.broker_url
    assert env["ABLY_KEY"] == KEY
    assert env["ABLY_WORKER_QUEUE"] == "ably-dev"
    assert env["ABLY_WORKER_DEDUP_PREFIX"] == "ably-dev"
    assert "ABLY_BRIDGE_KEY_PREFIX" not in env and "ABLY_WORKER_REDIS_KEY_PREFIX" not in env
    assert DevLayout.from_worker_env(env).handled_key == layout.handled_key
    assert DevLayout.from_worker_env(env).data_url == layout.data_url


def test_env_file_is_private_loadable_and_removed_only_when_unchanged(tmp_path: Path) -> None:
    from ably_bridge.devstack.config import ENV_FILE_VARIABLES, remove_env_file, write_env_file

    path = tmp_path / "dev.env"
    path.write_text("old")
    path.chmod(0o644)
    env = {name: f"v-{name}" for name in ENV_FILE_VARIABLES} | {"ABLY_KEY": "a.b:c'd", "X": "1"}
    write_env_file(path, env)
    assert path.stat().st_mode & 0o777 == 0o600
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . {path}; set +a; env"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "ABLY_KEY=a.b:c'd" in shell and "ABLY_PORT=v-ABLY_PORT" in shell
    assert not any(line.startswith("X=") for line in shell)  # only the client variables
    written = path.read_text()
    path.write_text(written + "# another run wrote this\n")
    remove_env_file(path, written)
    assert path.exists()  # not ours any more
    path.write_text(written)
    remove_env_file(path, written)
    assert not path.exists()
    remove_env_file(path, written)  # already gone: no error
