"""Bridge configuration: loading YAML/TOML, env overrides, secrets, every validation path."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

import ably_bridge.bridge as bridge_pkg
from ably_bridge.bridge.config import (
    BridgeConfig,
    CeleryTarget,
    ConfigError,
    StreamTarget,
    check_config,
    load_config,
    parse_config,
)

KEY = "appX.keyY:SuperSecretValue123"
CIPHER = base64.b64encode(bytes(range(32))).decode()
ENV = {"ABLY_KEY": KEY, "CELERY_BROKER_URL": "amqp://guest:brokerPW@127.0.0.1:5672//"}
EXAMPLE = Path(bridge_pkg.__file__).parent / "example.yaml"


def minimal(**route: Any) -> dict[str, Any]:
    base_route: dict[str, Any] = {
        "id": "r1",
        "channels": ["chat:*"],
        "targets": [{"type": "redis_stream", "key": "ably:{channel}"}],
    }
    base_route.update(route)
    return {"redis": {"url": "redis://127.0.0.1:6379/0"}, "routes": [base_route]}


def problems(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, ENV if env is None else env)
    return info.value.problems


def write(tmp_path: Path, data: Any, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


# -- happy paths -----------------------------------------------------------------------


def test_example_config_is_complete_and_valid() -> None:
    env = {**ENV, "CHAT_CIPHER_KEY": CIPHER}
    config = load_config(EXAMPLE, env)
    assert config.app_id == "appX"
    assert config.site == "bridge-eu-1"
    assert [r.id for r in config.routes] == ["chat", "telemetry"]
    chat = config.route("chat")
    assert chat.sources == {"message", "presence", "lifecycle"}
    celery_target, stream_target = chat.targets
    assert isinstance(celery_target, CeleryTarget)
    assert celery_target.task == "chat.tasks.handle_event"
    assert celery_target.priority == 5 and celery_target.expires == 300.0
    assert celery_target.headers == {"origin": "ably-bridge"}
    assert isinstance(stream_target, StreamTarget)
    assert stream_target.maxlen == 100_000 and stream_target.layout == "envelope"
    assert chat.ciphers[0].key.reveal() == CIPHER
    assert chat.presence_snapshot is not None
    telemetry = config.route("telemetry")
    assert telemetry.discovery is not None and telemetry.discovery.prefixes == ("telemetry:",)
    assert telemetry.data == "encoded"
    assert check_config(EXAMPLE, env) == []


def test_defaults_of_a_minimal_config() -> None:
    config = parse_config(minimal(), {"ABLY_KEY": KEY})
    assert isinstance(config, BridgeConfig)
    assert config.key_prefix == "ably-bridge" and config.site == "ably-bridge"
    assert config.delivery.batch_size == 500 and config.delivery.dedup_ttl == 3600.0
    assert config.dead_letter.stream == "ably-bridge:deadletter"
    assert config.routes[0].sources == {"message"}
    assert config.routes[0].data == "decoded"
    assert config.celery_broker_url is None


def test_toml_is_read_by_extension(tmp_path: Path) -> None:
    toml = """
site = "t"
[redis]
url = "redis://127.0.0.1:6379/0"
[[routes]]
id = "r1"
channels = ["a", "b*"]
sources = ["message", "presence"]
[[routes.targets]]
type = "redis_stream"
key = "s:{channel}"
maxlen = 10
"""
    config = load_config(write(tmp_path, toml, "bridge.toml"), {"ABLY_KEY": KEY})
    assert config.site == "t"
    assert config.routes[0].channels == ("a", "b*")
    target = config.routes[0].targets[0]
    assert isinstance(target, StreamTarget) and target.maxlen == 10


def test_environment_overrides(tmp_path: Path) -> None:
    raw = minimal()
    raw["ably"] = {"endpoint": "main"}
    raw["site"] = "file-site"
    env = {
        "ABLY_KEY": KEY,
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_APP_ID": "otherApp",
        "REDIS_URL": "redis://:pw@10.0.0.1:6380/3",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
        "ABLY_BRIDGE_SITE": "env-site",
        "ABLY_BRIDGE_KEY_PREFIX": "pfx",
        "ABLY_BRIDGE_HEALTH_PORT": "9000",
        "ABLY_BRIDGE_LOG_LEVEL": "debug",
    }
    config = load_config(write(tmp_path, raw), env)
    assert config.ably.endpoint == "127.0.0.1"
    assert config.app_id == "otherApp"
    assert config.redis_url.reveal() == "redis://:pw@10.0.0.1:6380/3"
    assert config.celery_broker_url is not None
    assert config.site == "env-site" and config.key_prefix == "pfx"
    assert config.health.port == 9000 and config.log_level == "DEBUG"


def test_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "ably.key").write_text(KEY + "\n")
    (tmp_path / "cipher.key").write_text(CIPHER)
    (tmp_path / "redis.url").write_text("redis://:filepw@127.0.0.1:6379/0")
    raw = minimal(ciphers=[{"channels": ["chat:*"], "key_file": "cipher.key"}])
    raw["ably"] = {"key_file": "ably.key"}
    raw["redis"] = {"url_file": "redis.url"}
    config = load_config(write(tmp_path, raw), {})
    assert config.ably.key is not None and config.ably.key.reveal() == KEY
    assert config.routes[0].ciphers[0].key.reveal() == CIPHER
    assert config.redis_url.reveal().endswith("@127.0.0.1:6379/0")


def test_secrets_never_in_repr_str_or_errors() -> None:
    env = {
        "ABLY_KEY": KEY,
        "REDIS_URL": "redis://user:redisPW@127.0.0.1:6379/0",
        "CELERY_BROKER_URL": "amqp://guest:brokerPW@127.0.0.1:5672//",
        "CK": CIPHER,
    }
    raw = minimal(
        ciphers=[{"channels": ["chat:*"], "key_env": "CK"}],
        targets=[{"type": "celery", "task": "t.x"}],
    )
    config = parse_config(raw, env)
    text = repr(config) + str(config)
    for secret in ("SuperSecretValue123", "redisPW", "brokerPW", CIPHER):
        assert secret not in text
    assert "appX.keyY:<redacted>" in text
    assert "redis://user:***@127.0.0.1:6379/0" in text
    # An invalid key or cipher reported in an error is not echoed either.
    bad = problems(
        minimal(ciphers=[{"channels": ["x"], "key_env": "CK"}]), {**env, "CK": "!!nope!!"}
    )
    assert bad == ["routes[0].ciphers[0].key_env: cipher key is not valid base64"]
    bad = problems(minimal(), {"ABLY_KEY": "notakeySECRETTEXT"})
    assert bad == ["ABLY_KEY: not an Ably key of the form appId.keyId:secret"]
    assert "SECRETTEXT" not in str(ConfigError(bad))


# -- secrets written in the file ----------------------------------------------------------


def test_literal_ably_key_is_an_error_with_advice() -> None:
    raw = minimal()
    raw["ably"] = {"key": KEY}
    found = problems(raw, {})
    assert found == [
        "ably.key: an Ably key must not be written in the config file; "
        "set ABLY_KEY or ably.key_file"
    ]
    assert all("SuperSecret" not in p for p in found)


def test_literal_cipher_key_is_an_error_with_advice() -> None:
    found = problems(minimal(ciphers=[{"channels": ["chat:*"], "key": CIPHER}]))
    assert found == [
        "routes[0].ciphers[0].key: a cipher key must not be written in the config file; "
        "use key_env (an environment variable name) or key_file"
    ]


def test_urls_with_passwords_in_the_file_are_errors() -> None:
    raw = minimal(targets=[{"type": "celery", "task": "a.b", "broker_url": "amqp://u:pw@h//"}])
    raw["redis"] = {"url": "redis://:pw@127.0.0.1:6379/0"}
    found = problems(raw, {"ABLY_KEY": KEY})
    assert (
        "redis.url: contains a password in the userinfo (user:password@): a credential must "
        "not be written in the config file; put the URL in the REDIS_URL environment variable "
        "or a file named by url_file" in found
    )
    assert (
        "routes[0].targets[0].broker_url: contains a password in the userinfo "
        "(user:password@): a credential must not be written in the config file; put the URL "
        "in a file named by broker_url_file" in found
    )


def test_missing_key_and_cipher_sources() -> None:
    raw = minimal(ciphers=[{"channels": ["chat:*"], "key_env": "NOPE"}, {"channels": ["x"]}])
    found = problems(raw, {})
    assert "ably.key_file: required (set ABLY_KEY or ably.key_file)" in found
    assert "routes[0].ciphers[0].key_env: environment variable NOPE is not set" in found
    assert "routes[0].ciphers[1]: needs key_env or key_file" in found


def test_cipher_key_length_is_checked() -> None:
    short = base64.b64encode(b"12345678").decode()
    found = problems(minimal(ciphers=[{"channels": ["a"], "key_env": "K"}]), {**ENV, "K": short})
    assert found == ["routes[0].ciphers[0].key_env: cipher key must be 128 or 256 bits, not 64"]


def test_unreadable_secret_file(tmp_path: Path) -> None:
    raw = minimal()
    raw["ably"] = {"key_file": str(tmp_path / "missing")}
    found = problems(raw, {})
    assert len(found) == 1 and found[0].startswith("ably.key_file: cannot read secret file")


# -- structural validation -------------------------------------------------------------------


def test_every_problem_is_listed_with_its_field_path() -> None:
    raw: dict[str, Any] = {
        "redis": {"url": "redis://127.0.0.1:6379/0"},
        "delivery": {"batch_size": 0, "retry": {"jitter": 2}},
        "routes": [
            {"id": "ok", "channels": ["a"], "targets": [{"type": "redis_stream", "key": "k"}]},
            {"id": "ok", "channels": ["b"], "targets": [{"type": "redis_stream", "key": "k"}]},
            {
                "id": "bad one",
                "channels": ["re:(unclosed"],
                "sources": ["message", "occupancy"],
                "names": ["re:["],
                "data": "raw",
                "presence_snapshot": True,
                "targets": [
                    {"type": "celery"},
                    {"type": "celery", "task": "not a task!", "priority": 300, "expires": 0},
                    {"type": "redis_stream", "key": "s:{chanel}", "maxlen": 0, "layout": "wide"},
                    {"type": "kafka"},
                ],
                "colour": "blue",
            },
        ],
    }
    found = problems(raw, {"ABLY_KEY": KEY, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15"})
    expected = [
        "delivery.batch_size: must be >= 1",
        "delivery.retry.jitter: must be between 0 and 1",
        "routes[1].id: duplicate route id 'ok'",
        "routes[2].colour: unknown field",
        "routes[2].id: must be 1-64 letters, digits, '_', '.' or '-'",
        "routes[2].channels[0]: invalid regular expression: missing ), unterminated subpattern "
        "at position 0",
        "routes[2].sources[1]: must be one of message, presence, lifecycle",
        "routes[2].data: must be one of decoded, encoded",
        "routes[2].presence_snapshot: needs 'presence' in sources",
        "routes[2].targets[0].task: required",
        "routes[2].targets[1].task: must be a dotted task name such as 'app.tasks.handle'",
        "routes[2].targets[1].priority: must be between 0 and 255",
        "routes[2].targets[1].expires: must be > 0",
        "routes[2].targets[2].key: unknown placeholder {chanel}; "
        "known: {app}, {channel}, {route}, {source}",
        "routes[2].targets[2].maxlen: must be >= 1",
        "routes[2].targets[2].layout: must be one of envelope, flat",
        "routes[2].targets[3].type: required: 'celery' or 'redis_stream'",
    ]
    for line in expected:
        assert line in found, line
    assert any(p.startswith("routes[2].names[0]: invalid regular expression") for p in found)
    assert len(found) == len(expected) + 1


def test_routes_are_required() -> None:
    assert problems({"redis": {"url": "redis://h:6379/0"}}) == [
        "routes: required (at least one route)"
    ]
    assert problems({"redis": {"url": "redis://h:6379/0"}, "routes": []}) == [
        "routes: must be a non-empty list"
    ]


def test_route_needs_channels_or_discovery_and_targets() -> None:
    found = problems({"redis": {"url": "redis://h/0"}, "routes": [{"id": "x"}]})
    assert found == [
        "routes[0].channels: required (channel names or patterns, or discover)",
        "routes[0].targets: required (at least one target)",
    ]
    found = problems(minimal(channels=None, discover={"interval": 0.5}))
    assert found == [
        "routes[0].discover.prefixes: required (at least one channel name prefix)",
        "routes[0].discover.interval: must be >= 1",
    ]


def test_celery_target_needs_a_broker() -> None:
    found = problems(minimal(targets=[{"type": "celery", "task": "a.b"}]), {"ABLY_KEY": KEY})
    assert found == [
        "routes[0].targets[0].broker_url: required (set CELERY_BROKER_URL or celery.broker_url)"
    ]


def test_celery_queue_type_is_checked_against_the_broker() -> None:
    quorum = {"type": "celery", "task": "a.b", "queue": "q", "queue_type": "quorum"}
    config = parse_config(minimal(targets=[quorum]), ENV)
    target = config.routes[0].targets[0]
    assert isinstance(target, CeleryTarget) and target.queue_type == "quorum"
    assert parse_config(minimal(targets=[{"type": "celery", "task": "a.b"}]), ENV).routes[
        0
    ].targets[0] == CeleryTarget(task="a.b")  # (no type: Celery's own declaration)
    bad = {**quorum, "queue_type": "stream"}
    assert problems(minimal(targets=[bad])) == [
        "routes[0].targets[0].queue_type: must be one of classic, quorum"
    ]
    redis_env = {"ABLY_KEY": KEY, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"}
    assert problems(minimal(targets=[quorum]), redis_env) == [
        "routes[0].targets[0].queue_type: applies to AMQP (RabbitMQ) brokers only"
    ]
    # The target's own broker decides, not the bridge-wide one.
    own = {**quorum, "broker_url": "amqp://127.0.0.1:5672//"}
    assert parse_config(minimal(targets=[own]), redis_env).routes[0].targets[0].queue_type == (
        "quorum"
    )


def test_redis_url_required_and_scheme_checked() -> None:
    raw = minimal()
    del raw["redis"]
    assert problems(raw) == [
        "redis.url: required (set the REDIS_URL environment variable or url or url_file)"
    ]
    raw["redis"] = {"url": "http://h/"}
    assert problems(raw) == [
        "redis.url: URL scheme must be one of redis, rediss, unix, redis+sentinel, "
        "redis+cluster, rediss+cluster, memory"
    ]


def test_presence_snapshot_template_placeholders() -> None:
    found = problems(
        minimal(sources=["presence"], presence_snapshot={"key": "p:{channel}:{source}"})
    )
    assert found == [
        "routes[0].presence_snapshot.key: unknown placeholder {source}; "
        "known: {app}, {channel}, {route}"
    ]


def test_bad_types_are_reported() -> None:
    raw = minimal(channels="single", names=[1])
    raw["health"] = {"port": 70000}
    raw["delivery"] = "fast"
    found = problems(raw)
    assert found == [
        "delivery: must be a mapping",
        "health.port: must be a port number 0-65535",
        "routes[0].names[0]: must be a non-empty string",
    ]


# -- files -------------------------------------------------------------------------------------


def test_file_errors(tmp_path: Path) -> None:
    assert check_config(tmp_path / "nope.yaml", ENV)[0].startswith("<file>: cannot read")
    assert check_config(write(tmp_path, "a: [", "x.yaml"), ENV)[0].startswith(
        "<file>: not valid YAML"
    )
    assert check_config(write(tmp_path, "x = ", "x.toml"), ENV)[0].startswith(
        "<file>: not valid TOML"
    )
    assert check_config(write(tmp_path, "{}", "x.json"), ENV) == [
        "<file>: unknown config format '.json'; use .yaml, .yml or .toml"
    ]
    assert check_config(write(tmp_path, "- 1\n", "list.yaml"), ENV) == [
        "<file>: the top level must be a mapping"
    ]


def test_config_error_message_lists_problems(tmp_path: Path) -> None:
    path = write(tmp_path, {"routes": []})
    with pytest.raises(ConfigError) as info:
        load_config(path, {"ABLY_KEY": KEY})
    text = str(info.value)
    assert str(path) in text and "  - routes: must be a non-empty list" in text


def test_a_route_can_take_some_message_actions_only() -> None:
    config = parse_config(minimal(actions=["message.create", "message.update"]), ENV)
    (route,) = config.routes
    assert route.actions == frozenset({"message.create", "message.update"})
    assert route.takes(None) and route.takes(0) and route.takes(1)
    assert not route.takes(2) and not route.takes(4) and not route.takes(9)
    (every,) = parse_config(minimal(), ENV).routes
    assert every.actions is None and every.takes(2) and every.takes(9)


def test_bad_actions_are_reported() -> None:
    known = "message.create, message.update, message.delete, meta, message.summary, message.append"
    assert problems(minimal(actions=["message.edit", 3])) == [
        "routes[0].actions[1]: must be a non-empty string",
        f"routes[0].actions[0]: must be one of {known}",
    ]
    assert problems(minimal(actions=[])) == [
        "routes[0].actions: must list at least one action (leave it out for every action)"
    ]
    assert problems(minimal(actions=["message.delete"], sources=["presence"])) == [
        "routes[0].actions: needs 'message' in sources"
    ]


def test_operations_lookback_is_seconds_and_off_by_default() -> None:
    assert parse_config(minimal(), ENV).delivery.operations_lookback == 0
    raw = minimal()
    raw["delivery"] = {"operations_lookback": 600}
    assert parse_config(raw, ENV).delivery.operations_lookback == 600
    raw["delivery"] = {"operations_lookback": -1}
    (problem,) = problems(raw)
    assert problem.startswith("delivery.operations_lookback: ")
