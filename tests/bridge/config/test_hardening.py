"""Config validation that nothing gets past: NaN and infinity, bounds, hosts, URLs,
credentials in every form, nesting, size - each refusal naming its field, never a traceback."""

from __future__ import annotations

import io
import math
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ably_bridge.bridge.config import ConfigError, check_config, load_config, parse_config
from ably_bridge.bridge.config.checks import MAX_DEPTH, MAX_FILE_BYTES
from ably_bridge.cli import main

KEY = "appX.keyY:SuperSecretValue123"
PW = "hunter2-but-longer"
STREAM = [{"type": "redis_stream", "key": "ably:{channel}"}]


def minimal(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "redis": {"url": "redis://127.0.0.1:6379/0"},
        "routes": [{"id": "r1", "channels": ["chat:*"], "targets": list(STREAM)}],
    }
    raw.update(extra)
    return raw


def problems(raw: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, {"ABLY_KEY": KEY} if env is None else env)
    return info.value.problems


def only(raw: Any, env: dict[str, str] | None = None) -> str:
    found = problems(raw, env)
    assert len(found) == 1, found
    return found[0]


# -- numbers: finite and bounded -------------------------------------------------------------

# (section path, field, a value past its bound)
BOUNDED = [
    ("ably", "channels_per_connection", 10_001),
    ("ably", "max_connections", 10_001),
    ("ably", "message_rate_budget", 1e7),
    ("delivery", "batch_size", 100_001),
    ("delivery", "buffer_size", 10_000_001),
    ("delivery", "dedup_ttl", 31 * 86400),
    ("delivery", "dedup_window", 100_000_001),
    ("delivery", "max_event_bytes", 513 * 1_048_576),
    ("delivery", "drain_timeout", 3601),
    ("delivery.retry", "initial", 3601),
    ("delivery.retry", "max_delay", 86401),
    ("delivery.retry", "multiplier", 101),
    ("delivery.retry", "max_attempts", 1_000_001),
    ("sharding", "shards", 4097),
    ("sharding", "lease_ttl", 3601),
    ("dead_letter", "maxlen", 10**10 + 1),
]


def nested(path: str, field: str, value: Any) -> dict[str, Any]:
    raw = minimal()
    node = raw
    for part in path.split("."):
        node = node.setdefault(part, {})
    node[field] = value
    return raw


@pytest.mark.parametrize(("path", "field", "too_big"), BOUNDED)
def test_every_number_is_bounded_and_finite(path: str, field: str, too_big: float) -> None:
    where = f"{path}.{field}"
    assert only(nested(path, field, too_big)).startswith(f"{where}: must be <= ")
    for bad in (math.inf, -math.inf, math.nan):
        assert only(nested(path, field, bad)) == (
            f"{where}: must be a finite number (not NaN or infinity)"
            if field in FLOATS
            else f"{where}: must be an integer"
        )


FLOATS = {
    "message_rate_budget", "dedup_ttl", "drain_timeout", "initial", "max_delay",
    "multiplier", "lease_ttl",
}  # fmt: skip


def test_the_issue_cases_lease_ttl_inf_and_nan_durations(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    text = yaml.safe_dump(minimal()) + "sharding: {mode: lease, lease_ttl: .inf}\n"
    text += "delivery: {drain_timeout: .nan, retry: {initial: .NaN}}\n"
    path.write_text(text)
    found = check_config(path, {"ABLY_KEY": KEY})
    assert found == [
        "delivery.retry.initial: must be a finite number (not NaN or infinity)",
        "delivery.drain_timeout: must be a finite number (not NaN or infinity)",
        "sharding.lease_ttl: must be a finite number (not NaN or infinity)",
    ]


def test_route_numbers_are_bounded() -> None:
    raw = minimal()
    raw["routes"][0]["discover"] = {"prefixes": ["x"], "interval": math.inf}
    raw["routes"][0]["targets"] = [
        {"type": "celery", "task": "a.b", "expires": 10**12, "priority": 10**20},
        {"type": "redis_stream", "key": "k", "maxlen": 10**11},
    ]
    found = problems(raw, {"ABLY_KEY": KEY, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"})
    assert found == [
        "routes[0].discover.interval: must be a finite number (not NaN or infinity)",
        "routes[0].targets[0].priority: must be <= 1,000,000,000",
        "routes[0].targets[0].expires: must be <= 3.1536e+07",
        "routes[0].targets[1].maxlen: must be <= 10,000,000,000",
    ]


# -- hosts and URLs: named, never echoed ----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("not a host", "must be a host name or an IP address without spaces"),
        ("127.0.0.1 x", "must be a host name or an IP address without spaces"),
        ("127.0.0.1,", "must be a host name or an IP address without spaces"),
        ("http://0.0.0.0", "must be a host name or an IP address, not a URL"),
        ("bad_host!", "must be a host name (letters, digits, '-' and '.') or an IP address"),
        ("-lead.example", "must be a host name (letters, digits, '-' and '.') or an IP address"),
        ("a" * 64 + ".example", "must be a host name (letters, digits, '-' and '.') or an IP"),
    ],
)
def test_a_bad_health_host_is_refused_by_name(host: str, reason: str) -> None:
    assert only(minimal(health={"host": host})).startswith(f"health.host: {reason}")
    env = {"ABLY_KEY": KEY, "ABLY_BRIDGE_HEALTH_HOST": host}
    assert only(minimal(), env).startswith(f"ABLY_BRIDGE_HEALTH_HOST: {reason}")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "bridge-0.svc.local."])
def test_good_health_hosts(host: str) -> None:
    assert parse_config(minimal(health={"host": host}), {"ABLY_KEY": KEY}).health.host == host


def test_several_health_hosts() -> None:
    env = {"ABLY_KEY": KEY, "ABLY_BRIDGE_HEALTH_HOST": "127.0.0.1, 10.1.2.3"}
    assert parse_config(minimal(), env).health.host == "127.0.0.1,10.1.2.3"
    listed = minimal(health={"host": ["127.0.0.1", "::1"]})
    assert parse_config(listed, {"ABLY_KEY": KEY}).health.host == "127.0.0.1,::1"
    assert only(minimal(health={"host": ["a"] * 9})).startswith("health.host: must be a host")
    assert only(minimal(health={"host": [1]})) == "health.host: must be a string"


def test_a_bad_endpoint_is_refused_by_name() -> None:
    assert only(minimal(ably={"endpoint": "https://rest.ably.io"})) == (
        "ably.endpoint: must be a host name or an IP address, not a URL"
    )
    assert only(minimal(ably={"endpoint": "Main_Policy"})) == (
        "ably.endpoint: must be a routing policy name (such as main or nonprod:sandbox) "
        "or a host name"
    )
    env = {"ABLY_KEY": KEY, "ABLY_ENDPOINT": "bad host.example"}
    assert only(minimal(), env).startswith("ABLY_ENDPOINT: must be a host name")
    for good in ("main", "nonprod:sandbox", "127.0.0.1", "rest.example.com", "localhost"):
        assert parse_config(minimal(ably={"endpoint": good}), {"ABLY_KEY": KEY})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:99999/0", "is not a valid URL (Port out of range 0-65535)"),
        ("redis://127.0.0.1:port/0", "is not a valid URL (Port could not be cast"),
        ("redis://[::1/0", "is not a valid URL (Invalid IPv6 URL)"),
        ("redis:///0", "needs a host"),
        ("redis://bad_host!/0", "host must be a host name"),
        ("redis://127.0.0.1:0/0", "port must be 1-65535"),
        ("redis://127.0.0.1:6379/zero", "the path must be a database number such as /0"),
        ("redis://127.0.0.1 :6379/0", "must not contain spaces"),
        (
            "http://127.0.0.1:6379/0",
            "URL scheme must be one of redis, rediss, unix, redis+sentinel, redis+cluster, "
            "rediss+cluster, memory",
        ),
        ("unix://", "needs the path of the socket"),
    ],
)  # fmt: skip
def test_a_bad_redis_url_is_refused_naming_where_it_came_from(url: str, reason: str) -> None:
    assert only(minimal(redis={"url": url})).startswith(f"redis.url: {reason}")
    env = {"ABLY_KEY": KEY, "REDIS_URL": url}
    found = only(minimal(), env)
    assert found.startswith(f"REDIS_URL: {reason}")
    assert url not in found


def test_broker_url_lists_are_checked_part_by_part() -> None:
    env = {"ABLY_KEY": KEY, "CELERY_BROKER_URL": "amqp://h1//;amqp://:5672//"}
    raw = minimal()
    raw["routes"][0]["targets"] = [{"type": "celery", "task": "a.b"}]
    assert only(raw, env) == "CELERY_BROKER_URL: URL 2 of 2: needs a host"
    env["CELERY_BROKER_URL"] = "amqp://h1//;amqp://h2:5672//"
    assert parse_config(raw, env).celery_broker_url is not None


# -- credentials written in the file: every form, whatever the environment says ---------------

CREDENTIAL_URLS = [
    f"redis://:{PW}@127.0.0.1:6379/0",
    f"redis://127.0.0.1:6379/0?password={PW}",
    f"rediss://user:{PW}@127.0.0.1:6380/0",
    f"unix:///run/redis.sock?password={PW}",
    f"sentinel://:{PW}@127.0.0.1:26379;sentinel://:{PW}@127.0.0.2:26379",
]
BROKER_URLS = [
    f"amqp://guest:{PW}@127.0.0.1:5672//",
    f"amqps://guest:{PW}@127.0.0.1:5671//",
    f"redis://127.0.0.1:6379/1?password={PW}",
]
OVERRIDES = {
    "ABLY_KEY": KEY,
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1",
}


@pytest.mark.parametrize("url", CREDENTIAL_URLS)
@pytest.mark.parametrize("env", [{"ABLY_KEY": KEY}, OVERRIDES], ids=["file", "env-set"])
def test_a_redis_credential_in_the_file_is_refused(url: str, env: dict[str, str]) -> None:
    raw = minimal(redis={"url": url})
    raw["routes"][0]["targets"] = [{"type": "redis_stream", "key": "k", "url": url}]
    found = problems(raw, env)
    assert [p.split(": ", 1)[0] for p in found] == ["redis.url", "routes[0].targets[0].url"]
    assert all("a credential must not be written in the config file" in p for p in found)
    assert "REDIS_URL environment variable or a file named by url_file" in found[0]
    assert not any(PW in p for p in found)


@pytest.mark.parametrize("url", BROKER_URLS)
@pytest.mark.parametrize("env", [{"ABLY_KEY": KEY}, OVERRIDES], ids=["file", "env-set"])
def test_a_broker_credential_in_the_file_is_refused(url: str, env: dict[str, str]) -> None:
    raw = minimal(celery={"broker_url": url})
    raw["routes"][0]["targets"] = [{"type": "celery", "task": "a.b", "broker_url": url}]
    found = problems(raw, env)
    assert [p.split(": ", 1)[0] for p in found] == [
        "celery.broker_url",
        "routes[0].targets[0].broker_url",
    ]
    assert "CELERY_BROKER_URL environment variable" in found[0]
    assert not any(PW in p for p in found)


def test_a_credential_anywhere_else_in_the_file_is_refused_too() -> None:
    raw = minimal()
    raw["routes"][0]["targets"] = [
        {"type": "celery", "task": "a.b", "headers": {"x-callback": f"amqp://u:{PW}@h//"}}
    ]
    found = problems(raw, OVERRIDES)
    assert found == [
        "routes[0].targets[0].headers.x-callback: contains a password in the userinfo "
        "(user:password@): a credential must not be written in the config file; set it "
        "through the environment or a *_file setting"
    ]


def test_a_secret_where_its_file_belongs_is_not_echoed() -> None:
    found = problems(minimal(ably={"key_file": KEY}), {})
    assert found == ["ably.key_file: must be the path of a file holding the secret, not the secret"]
    found = problems(minimal(redis={"url_file": f"redis://:{PW}@h/0"}), {"ABLY_KEY": KEY})
    assert found == [
        "redis.url_file: must be the path of a file holding the secret, not the secret"
    ]


def test_secret_files_are_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.key"
    big.write_bytes(b"x" * 70_000)
    binary = tmp_path / "bin.key"
    binary.write_bytes(b"\xff\xfe")
    assert only(minimal(ably={"key_file": str(big)}), {}).endswith("is larger than 65536 bytes")
    assert only(minimal(ably={"key_file": str(binary)}), {}).endswith("is not UTF-8 text")


# -- shape: nesting, size, aliases; never a traceback -----------------------------------------


def test_deeply_nested_yaml_and_toml_give_a_clear_error(tmp_path: Path) -> None:
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("routes: " + "[" * 50_000 + "]" * 50_000 + "\n")
    deep_toml = tmp_path / "deep.toml"
    deep_toml.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    for path in (deep_yaml, deep_toml):
        found = check_config(path, {"ABLY_KEY": KEY})
        assert found == [
            f"<file>: nested too deeply (the configuration needs at most {MAX_DEPTH} levels)"
        ]
    shallow_but_deep = minimal()
    node = shallow_but_deep["routes"][0]
    for _ in range(MAX_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    found = problems(shallow_but_deep)
    assert f"routes[0].x.x.x.x.x.x.x.x.x.x.x.x.x.x: nested deeper than {MAX_DEPTH} levels" in found


def test_check_config_never_prints_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "{b: " * 20_000 + "1" + "}" * 20_000 + "\n")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check-config", str(deep)])
    assert code == 1
    assert "Traceback" not in err.getvalue() + out.getvalue()
    assert "nested too deeply" in err.getvalue()


def test_a_large_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (MAX_FILE_BYTES + 10))
    assert check_config(big, {"ABLY_KEY": KEY}) == [
        f"<file>: larger than {MAX_FILE_BYTES:,} bytes (is this the configuration?)"
    ]
    assert check_config(Path("/dev/zero").with_suffix(""), {}) != []


def test_yaml_alias_chains_are_walked_once(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(minimal()))
    started = time.process_time()
    found = check_config(path, {"ABLY_KEY": KEY})
    assert time.process_time() - started < 5  # 10^9 leaves if expanded; a bound, not a speed
    assert [p.split(":")[0] for p in found] == [f"a{i}" for i in range(9)]


def test_unexpected_errors_become_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ably_bridge.bridge.config as config_module

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError(f"bug near redis://:{PW}@h/0")

    monkeypatch.setattr(config_module, "parse_config", broken)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    assert check_config(path, {"ABLY_KEY": KEY}) == [
        "<file>: could not be validated (TypeError: bug near redis://:***@h/0)"
    ]


def test_run_reports_a_validator_bug_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ably_bridge.bridge.config as config_module

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError(f"bug near redis://:{PW}@h/0")

    monkeypatch.setattr(config_module, "load_config", broken)
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["run", "--config", str(tmp_path / "b.yaml")]) == 1
    assert err.getvalue() == (
        f"{tmp_path / 'b.yaml'}: could not be validated (TypeError: bug near redis://:***@h/0)\n"
    )


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["redis://h/0", "re:(a)\\1", "*", "chat:*", "nan", "-1", "127.0.0.1"]),
)  # fmt: skip
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(["id", "channels", "targets", "type", "key", "url",
                                       "task", "port", "host", "mode", "retry"]),
                      st.text(max_size=5), st.integers()),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)  # fmt: skip
_SECTIONS = ["ably", "redis", "celery", "delivery", "dead_letter", "health", "sharding",
             "routes", "log_level", "log_format", "log_payloads", "site", "app_id"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_SECTIONS), _TREES, max_size=6))
def test_random_configurations_raise_nothing_but_config_errors(raw: dict[str, Any]) -> None:
    found: list[str] = []
    try:
        parse_config(raw, {"ABLY_KEY": KEY})
    except ConfigError as err:  # anything else fails the test
        found = err.problems
    assert all(": " in p for p in found)


def test_the_file_loads_when_everything_is_in_bounds(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(minimal(sharding={"mode": "lease", "lease_ttl": 3600})))
    assert load_config(path, {"ABLY_KEY": KEY}).sharding.lease_ttl == 3600.0
