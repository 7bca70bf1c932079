"""Bridge configuration: the file format, environment overrides, secrets and validation.

This module owns :class:`BridgeConfig` and everything in it (routes, targets,
delivery, dead-letter and health settings), :func:`load_config` that reads a
YAML (``.yaml``/``.yml``, PyYAML ``safe_load``) or TOML (``.toml``) file and
applies environment overrides, and :func:`check_config` behind
``ably-bridge check-config``. Nothing here connects to anything.

Rules that matter to operators:

* **Secrets come only from the environment or from a file path.** The Ably key
  is ``ABLY_KEY`` or ``ably.key_file``; a cipher key is ``key_env`` or
  ``key_file``; a Redis or broker URL with a password comes from ``REDIS_URL`` /
  ``CELERY_BROKER_URL`` or ``url_file`` / ``broker_url_file``. A literal secret in
  the file is an error that names the field and says what to use instead.
* **Every problem is reported at once**, each with its field path, e.g.
  ``routes[2].targets[0].task: required``. Secret values never appear in an
  error, a repr or a log line (they are held as :class:`Secret`).
* Environment overrides: ``ABLY_KEY``, ``ABLY_KEY_FILE``, ``ABLY_ENDPOINT``,
  ``ABLY_APP_ID``, ``REDIS_URL``, ``CELERY_BROKER_URL``, ``ABLY_BRIDGE_SITE``,
  ``ABLY_BRIDGE_KEY_PREFIX``, ``ABLY_BRIDGE_HEALTH_PORT``, ``ABLY_BRIDGE_LOG_LEVEL``,
  and for sharding ``ABLY_BRIDGE_SHARDING`` (the mode), ``ABLY_BRIDGE_REPLICA_INDEX``
  and ``ABLY_BRIDGE_REPLICAS`` (static mode; the index defaults to the ordinal of a
  StatefulSet host name such as ``ably-bridge-2``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ably_bridge.bridge.patterns import PatternError, compile_pattern, is_pattern
from ably_bridge.bridge.secret import Secret, url_has_password

__all__ = [
    "ENV_OVERRIDES",
    "KEY_PLACEHOLDERS",
    "SOURCES",
    "AblySettings",
    "BridgeConfig",
    "CeleryTarget",
    "CipherRule",
    "ConfigError",
    "DeadLetterSettings",
    "DeliverySettings",
    "Discovery",
    "HealthSettings",
    "PresenceSnapshotSettings",
    "RetrySettings",
    "Route",
    "ShardingSettings",
    "StreamTarget",
    "Target",
    "check_config",
    "load_config",
    "parse_config",
]

logger = logging.getLogger(__name__)

Source = Literal["message", "presence", "lifecycle"]
SOURCES: tuple[Source, ...] = ("message", "presence", "lifecycle")
KEY_PLACEHOLDERS = frozenset({"channel", "route", "app", "source"})
PRESENCE_KEY_PLACEHOLDERS = frozenset({"channel", "route", "app"})
LAYOUTS = ("envelope", "flat")
DATA_MODES = ("decoded", "encoded")
STREAM_SCHEMES = ("redis", "rediss", "unix", "memory")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "memory")
DEFAULT_PRESENCE_KEY = "ably:presence:{channel}"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")

# Environment variable -> what it overrides (documentation and check-config output).
ENV_OVERRIDES: dict[str, str] = {
    "ABLY_KEY": "ably.key (secret)",
    "ABLY_KEY_FILE": "ably.key_file",
    "ABLY_ENDPOINT": "ably.endpoint",
    "ABLY_APP_ID": "app_id",
    "REDIS_URL": "redis.url",
    "CELERY_BROKER_URL": "celery.broker_url",
    "ABLY_BRIDGE_SITE": "site",
    "ABLY_BRIDGE_KEY_PREFIX": "redis.key_prefix",
    "ABLY_BRIDGE_HEALTH_PORT": "health.port",
    "ABLY_BRIDGE_LOG_LEVEL": "log_level",
    "ABLY_BRIDGE_SHARDING": "sharding.mode",
    "ABLY_BRIDGE_REPLICA_INDEX": "sharding.replica_index",
    "ABLY_BRIDGE_REPLICAS": "sharding.replicas",
}
SHARDING_MODES = ("none", "static", "lease")

_ROUTE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:[.:][A-Za-z_][A-Za-z0-9_-]*)*$")
_ABLY_KEY = re.compile(r"^([^.:\s]+)\.([^.:\s]+):(\S+)$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every ``field.path: reason``."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")


# ---------------------------------------------------------------------------
# The configuration model
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AblySettings:
    """How the bridge reaches Ably. ``key`` is a :class:`Secret`."""

    key: Secret | None = None
    endpoint: str | None = None
    use_binary_protocol: bool = True
    port: int | None = None  # non-default port (e.g. the local emulator)
    tls: bool = True
    # Scale-out within one process (see bridge/connections.py): a real Ably
    # connection attaches at most ~200 channels and receives ~50 msg/s.
    channels_per_connection: int = 200
    max_connections: int = 0  # 0 = as many as the channels need
    message_rate_budget: float = 50.0  # inbound messages/s one connection should carry


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Exponential backoff with jitter for sink retries (seconds)."""

    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_attempts: int = 0  # 0 = retry until the sink comes back


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Batching, buffering, de-duplication and size limits of the data path."""

    batch_size: int = 500
    buffer_size: int = 10_000
    dedup_ttl: float = 3600.0
    dedup_window: int = 100_000
    max_event_bytes: int = 1_048_576
    retry: RetrySettings = field(default_factory=RetrySettings)
    drain_timeout: float = 30.0  # seconds SIGTERM waits for the sink buffers to drain


@dataclass(frozen=True, slots=True)
class DeadLetterSettings:
    """The dead-letter stream: where undecodable, oversized or rejected events go."""

    stream: str = "ably-bridge:deadletter"
    maxlen: int = 100_000


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """The health/metrics HTTP endpoint."""

    host: str = "127.0.0.1"
    port: int = 8081
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ShardingSettings:
    """How replicas share the channels (see bridge/sharding.py).

    ``mode``: ``none`` (this process bridges every channel: run one replica),
    ``static`` (replica ``replica_index`` of ``replicas`` owns the shards
    ``s`` with ``s % replicas == replica_index``) or ``lease`` (shards leased
    in Redis with a TTL, rebalanced as replicas join and leave).
    """

    mode: Literal["none", "static", "lease"] = "none"
    shards: int = 64
    lease_ttl: float = 10.0  # seconds; renewed every lease_ttl / 3
    replica_index: int | None = None  # static: None = the host name's ordinal
    replicas: int | None = None  # static: required

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


@dataclass(frozen=True, slots=True)
class CeleryTarget:
    """Send each event as one Celery task, by name; the task receives one envelope."""

    task: str
    queue: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    expires: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    broker_url: Secret | None = None  # None: the bridge-wide celery.broker_url

    kind: Literal["celery"] = field(default="celery", init=False)


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """XADD each event to a Redis Stream named by ``key`` (a template)."""

    key: str
    maxlen: int | None = None
    approximate: bool = True
    layout: Literal["envelope", "flat"] = "envelope"
    url: Secret | None = None  # None: the bridge-wide redis.url

    kind: Literal["redis_stream"] = field(default="redis_stream", init=False)


Target = CeleryTarget | StreamTarget


@dataclass(frozen=True, slots=True)
class CipherRule:
    """A cipher key for the channels matching ``channels`` (first rule wins)."""

    channels: tuple[str, ...]
    key: Secret


@dataclass(frozen=True, slots=True)
class Discovery:
    """Find active channels by prefix through the REST channel enumeration, polled."""

    prefixes: tuple[str, ...] = ()
    interval: float = 30.0


@dataclass(frozen=True, slots=True)
class PresenceSnapshotSettings:
    """Keep a live hash of each channel's presence members."""

    key: str = DEFAULT_PRESENCE_KEY


@dataclass(frozen=True, slots=True)
class Route:
    """Which channels, sources and names go to which targets."""

    id: str
    channels: tuple[str, ...]
    targets: tuple[Target, ...]
    sources: frozenset[Source] = frozenset({"message"})
    names: tuple[str, ...] = ()
    discovery: Discovery | None = None
    ciphers: tuple[CipherRule, ...] = ()
    data: Literal["decoded", "encoded"] = "decoded"
    presence_snapshot: PresenceSnapshotSettings | None = None


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The whole bridge configuration, validated; secrets held as :class:`Secret`."""

    app_id: str
    ably: AblySettings
    redis_url: Secret
    routes: tuple[Route, ...]
    celery_broker_url: Secret | None = None
    key_prefix: str = "ably-bridge"
    site: str = "ably-bridge"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    log_payloads: bool = False
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    dead_letter: DeadLetterSettings = field(default_factory=DeadLetterSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    sharding: ShardingSettings = field(default_factory=ShardingSettings)

    def route(self, route_id: str) -> Route:
        """The route with id ``route_id``; KeyError if none."""
        for route in self.routes:
            if route.id == route_id:
                return route
        raise KeyError(route_id)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read, override from ``env`` (default ``os.environ``) and validate a config file.

    Raises :class:`ConfigError` listing every problem with its field path.
    """
    env = os.environ if env is None else env
    raw = _read_file(Path(path))
    return parse_config(raw, env, source=str(path), base_dir=Path(path).parent)


def check_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The problems of a config file (empty when valid); never connects anywhere."""
    try:
        load_config(path, env)
    except ConfigError as err:
        return err.problems
    return []


def _read_file(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"<file>: cannot read {path}: {exc.strerror}"], str(path)) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            raw: Any = tomllib.loads(text.decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(
                [f"<file>: unknown config format {suffix or '(none)'!r}; use .yaml, .yml or .toml"],
                str(path),
            )
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"<file>: not valid {suffix[1:].upper()}: {exc}"], str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(["<file>: the top level must be a mapping"], str(path))
    return raw


def parse_config(
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
    base_dir: Path | None = None,
) -> BridgeConfig:
    """Validate an already-parsed mapping (e.g. from a test) with env overrides."""
    env = os.environ if env is None else env
    parser = _Parser(env, base_dir or Path.cwd())
    config = parser.config(raw)
    if parser.problems or config is None:
        raise ConfigError(parser.problems, source)
    return config


# ---------------------------------------------------------------------------
# The validating parser
# ---------------------------------------------------------------------------

_MISSING: Any = object()
_SECRET_WORDS = frozenset({"key", "secret", "password", "token"})


class _Parser:
    """Walks the raw mapping, collecting every problem with its field path."""

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []

    # -- small helpers ---------------------------------------------------
    def fail(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def section(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping")
            return {}
        return value

    def known(
        self,
        raw: Mapping[str, Any],
        allowed: set[str],
        path: str,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Report unknown fields; a literal secret field gets its own advice."""
        for key in raw:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else str(key)
            if secrets and key in secrets:
                self.fail(where, secrets[key])
            elif key in _SECRET_WORDS:
                self.fail(where, "unknown field (secrets come from the environment or a file)")
            else:
                self.fail(where, "unknown field")

    def text(
        self, raw: Mapping[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return default
        return value

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0.0,
        exclusive: bool = False,
    ) -> float:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, "must be a number")
            return default
        if (value <= minimum) if exclusive else (value < minimum):
            self.fail(path, f"must be {'>' if exclusive else '>='} {minimum:g}")
            return default
        return float(value)

    def integer(
        self, raw: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int = 1
    ) -> int:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer")
            return default
        if value < minimum:
            self.fail(path, f"must be >= {minimum}")
            return default
        return value

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return default
        return value

    def str_list(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(path, "must be a string or a list of strings")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.fail(f"{path}[{i}]", "must be a non-empty string")
            else:
                out.append(item)
        return tuple(out)

    def patterns(self, raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        items = self.str_list(raw, key, path)
        for i, item in enumerate(items):
            if is_pattern(item):
                try:
                    compile_pattern(item)
                except PatternError as exc:
                    self.fail(f"{path}[{i}]", str(exc))
        return items

    def read_secret_file(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(path, "must be a file path")
            return None
        file_path = Path(value)
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        try:
            content = file_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.fail(path, f"cannot read secret file {value}: {exc.strerror}")
            return None
        if not content:
            self.fail(path, f"secret file {value} is empty")
            return None
        return content

    def url(
        self,
        raw: Mapping[str, Any],
        name: str,
        path: str,
        env_name: str | None,
        schemes: tuple[str, ...],
        *,
        required: bool,
    ) -> Secret | None:
        """A URL from ``env_name``, ``<name>_file`` or ``<name>`` (only without a password)."""
        literal = raw.get(name)
        file_value = raw.get(f"{name}_file")
        value: str | None = None
        where = path
        via = f"the {env_name} environment variable or " if env_name else ""
        if env_name and self.env.get(env_name):
            value, where = self.env[env_name], env_name
        elif file_value is not None:
            value, where = self.read_secret_file(file_value, f"{path}_file"), f"{path}_file"
            if value is None:
                return None
        elif literal is not None:
            if not isinstance(literal, str) or not literal:
                self.fail(path, "must be a URL string")
                return None
            if url_has_password(literal):
                self.fail(
                    path,
                    f"contains a password; put the URL in {via}a file named by {name}_file",
                )
                return None
            value = literal
        if value is None:
            if required:
                self.fail(path, f"required (set {via}{name} or {name}_file)")
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in schemes:
            self.fail(where, f"URL scheme must be one of {', '.join(schemes)}")
            return None
        return Secret.url(value)

    # -- sections ----------------------------------------------------------
    def config(self, raw: Mapping[str, Any]) -> BridgeConfig | None:
        self.known(
            raw,
            {
                "app_id", "site", "log_level", "log_format", "log_payloads", "ably", "redis",
                "celery", "delivery", "dead_letter", "health", "routes", "sharding",
            },
            "",
        )  # fmt: skip
        ably, key_app_id = self.ably(self.section(raw, "ably", "ably"))
        redis_raw = self.section(raw, "redis", "redis")
        self.known(redis_raw, {"url", "url_file", "key_prefix"}, "redis")
        redis_url = self.url(
            redis_raw, "url", "redis.url", "REDIS_URL", STREAM_SCHEMES, required=True
        )
        key_prefix = self.env.get("ABLY_BRIDGE_KEY_PREFIX") or self.text(
            redis_raw, "key_prefix", "redis.key_prefix", "ably-bridge"
        )
        celery_raw = self.section(raw, "celery", "celery")
        self.known(celery_raw, {"broker_url", "broker_url_file"}, "celery")
        broker = self.url(
            celery_raw,
            "broker_url",
            "celery.broker_url",
            "CELERY_BROKER_URL",
            BROKER_SCHEMES,
            required=False,
        )
        app_id = self.env.get("ABLY_APP_ID") or self.text(raw, "app_id", "app_id") or key_app_id
        if not app_id and ably.key is not None:  # (no key: that problem is reported already)
            self.fail("app_id", "required (set app_id, ABLY_APP_ID, or an Ably key)")
        site = self.env.get("ABLY_BRIDGE_SITE") or self.text(raw, "site", "site", "ably-bridge")
        log_level = (
            self.env.get("ABLY_BRIDGE_LOG_LEVEL") or self.text(raw, "log_level", "log_level", "")
        ) or "INFO"
        if log_level.upper() not in LOG_LEVELS:
            self.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        log_format = self.text(raw, "log_format", "log_format", "json") or "json"
        if log_format not in LOG_FORMATS:
            self.fail("log_format", f"must be one of {', '.join(LOG_FORMATS)}")
        log_payloads = self.boolean(raw, "log_payloads", "log_payloads", False)
        delivery = self.delivery(self.section(raw, "delivery", "delivery"))
        dead_letter = self.dead_letter(self.section(raw, "dead_letter", "dead_letter"))
        health = self.health(self.section(raw, "health", "health"))
        sharding = self.sharding(self.section(raw, "sharding", "sharding"))
        routes = self.routes(raw.get("routes"), broker is not None)
        if redis_url is None or not app_id or routes is None or key_prefix is None or site is None:
            return None
        return BridgeConfig(
            app_id=app_id,
            ably=ably,
            redis_url=redis_url,
            routes=routes,
            celery_broker_url=broker,
            key_prefix=key_prefix,
            site=site,
            log_level=log_level.upper(),
            log_format=log_format,  # type: ignore[arg-type]
            log_payloads=log_payloads,
            delivery=delivery,
            dead_letter=dead_letter,
            health=health,
            sharding=sharding,
        )

    def ably(self, raw: Mapping[str, Any]) -> tuple[AblySettings, str | None]:
        advice = {
            "key": "an Ably key must not be written in the config file; "
            "set ABLY_KEY or ably.key_file"
        }
        self.known(
            raw,
            {
                "key_file", "endpoint", "use_binary_protocol", "port", "tls",
                "channels_per_connection", "max_connections", "message_rate_budget",
            },
            "ably",
            advice,
        )  # fmt: skip
        key_text: str | None = None
        key_path = "ably.key_file"
        if self.env.get("ABLY_KEY"):
            key_text, key_path = self.env["ABLY_KEY"], "ABLY_KEY"
        else:
            file_value = self.env.get("ABLY_KEY_FILE") or raw.get("key_file")
            if file_value is not None:
                key_text = self.read_secret_file(file_value, key_path)
            elif "key" not in raw:
                self.fail("ably.key_file", "required (set ABLY_KEY or ably.key_file)")
        app_id: str | None = None
        key: Secret | None = None
        if key_text is not None:
            match = _ABLY_KEY.match(key_text)
            if match is None:
                self.fail(key_path, "not an Ably key of the form appId.keyId:secret")
            else:
                app_id = match.group(1)
                key = Secret(key_text, f"{match.group(1)}.{match.group(2)}:<redacted>")
        endpoint = self.env.get("ABLY_ENDPOINT") or self.text(raw, "endpoint", "ably.endpoint")
        binary = self.boolean(raw, "use_binary_protocol", "ably.use_binary_protocol", True)
        port: int | None = None
        if raw.get("port") is not None:
            port = self.integer(raw, "port", "ably.port", 443, minimum=1)
            if port > 65535:
                self.fail("ably.port", "must be a port number 1-65535")
        tls = self.boolean(raw, "tls", "ably.tls", True)
        settings = AblySettings(
            key=key,
            endpoint=endpoint,
            use_binary_protocol=binary,
            port=port,
            tls=tls,
            channels_per_connection=self.integer(
                raw, "channels_per_connection", "ably.channels_per_connection", 200
            ),
            max_connections=self.integer(
                raw, "max_connections", "ably.max_connections", 0, minimum=0
            ),
            message_rate_budget=self.number(
                raw, "message_rate_budget", "ably.message_rate_budget", 50.0, exclusive=True
            ),
        )
        return settings, app_id

    def delivery(self, raw: Mapping[str, Any]) -> DeliverySettings:
        p = "delivery"
        self.known(
            raw,
            {
                "batch_size", "buffer_size", "dedup_ttl", "dedup_window", "max_event_bytes",
                "retry", "drain_timeout",
            },
            p,
        )  # fmt: skip
        retry_raw = self.section(raw, "retry", f"{p}.retry")
        rp = f"{p}.retry"
        self.known(retry_raw, {"initial", "multiplier", "max_delay", "jitter", "max_attempts"}, rp)
        initial = self.number(retry_raw, "initial", f"{rp}.initial", 0.5, exclusive=True)
        max_delay = self.number(retry_raw, "max_delay", f"{rp}.max_delay", 30.0, exclusive=True)
        if max_delay < initial:
            self.fail(f"{rp}.max_delay", "must be >= retry.initial")
        jitter = self.number(retry_raw, "jitter", f"{rp}.jitter", 0.5)
        if jitter > 1:
            self.fail(f"{rp}.jitter", "must be between 0 and 1")
        retry = RetrySettings(
            initial=initial,
            multiplier=self.number(retry_raw, "multiplier", f"{rp}.multiplier", 2.0, minimum=1.0),
            max_delay=max_delay,
            jitter=min(jitter, 1.0),
            max_attempts=self.integer(
                retry_raw, "max_attempts", f"{rp}.max_attempts", 0, minimum=0
            ),
        )
        return DeliverySettings(
            batch_size=self.integer(raw, "batch_size", f"{p}.batch_size", 500),
            buffer_size=self.integer(raw, "buffer_size", f"{p}.buffer_size", 10_000),
            dedup_ttl=self.number(raw, "dedup_ttl", f"{p}.dedup_ttl", 3600.0, exclusive=True),
            dedup_window=self.integer(raw, "dedup_window", f"{p}.dedup_window", 100_000, minimum=0),
            max_event_bytes=self.integer(
                raw, "max_event_bytes", f"{p}.max_event_bytes", 1_048_576, minimum=256
            ),
            retry=retry,
            drain_timeout=self.number(raw, "drain_timeout", f"{p}.drain_timeout", 30.0),
        )

    def sharding(self, raw: Mapping[str, Any]) -> ShardingSettings:
        p = "sharding"
        self.known(raw, {"mode", "shards", "lease_ttl", "replica_index", "replicas"}, p)
        mode = self.env.get("ABLY_BRIDGE_SHARDING") or self.text(raw, "mode", f"{p}.mode", "none")
        if mode not in SHARDING_MODES:
            self.fail(f"{p}.mode", f"must be one of {', '.join(SHARDING_MODES)}")
            mode = "none"
        shards = self.integer(raw, "shards", f"{p}.shards", 64)
        lease_ttl = self.number(raw, "lease_ttl", f"{p}.lease_ttl", 10.0, minimum=0.5)
        index = replicas = None
        if mode == "static":  # (only static mode reads them: a pod may set them anyway)
            index = self.optional_int(raw, "replica_index", p, "ABLY_BRIDGE_REPLICA_INDEX", 0)
            replicas = self.optional_int(raw, "replicas", p, "ABLY_BRIDGE_REPLICAS", 1)
            if replicas is None:
                self.fail(f"{p}.replicas", "required in static mode (or ABLY_BRIDGE_REPLICAS)")
            elif index is not None and index >= replicas:
                self.fail(f"{p}.replica_index", f"must be < replicas ({replicas})")
            elif replicas > shards:
                self.fail(f"{p}.replicas", f"must be <= shards ({shards})")
        return ShardingSettings(
            mode=mode,  # type: ignore[arg-type]
            shards=shards,
            lease_ttl=lease_ttl,
            replica_index=index,
            replicas=replicas,
        )

    def optional_int(
        self, raw: Mapping[str, Any], key: str, path: str, env_name: str, minimum: int
    ) -> int | None:
        """An integer from ``env_name`` (wins), else ``raw[key]``, else None."""
        value = self.env.get(env_name)
        if value:
            if not value.isdigit() or int(value) < minimum:
                self.fail(env_name, f"must be an integer >= {minimum}")
                return None
            return int(value)
        if raw.get(key) is None:
            return None
        return self.integer(raw, key, f"{path}.{key}", minimum, minimum=minimum)

    def dead_letter(self, raw: Mapping[str, Any]) -> DeadLetterSettings:
        self.known(raw, {"stream", "maxlen"}, "dead_letter")
        return DeadLetterSettings(
            stream=self.text(raw, "stream", "dead_letter.stream", "ably-bridge:deadletter")
            or "ably-bridge:deadletter",
            maxlen=self.integer(raw, "maxlen", "dead_letter.maxlen", 100_000),
        )

    def health(self, raw: Mapping[str, Any]) -> HealthSettings:
        self.known(raw, {"host", "port", "enabled"}, "health")
        port = self.integer(raw, "port", "health.port", 8081, minimum=0)
        env_port = self.env.get("ABLY_BRIDGE_HEALTH_PORT")
        if env_port:
            if env_port.isdigit() and int(env_port) <= 65535:
                port = int(env_port)
            else:
                self.fail("ABLY_BRIDGE_HEALTH_PORT", "must be a port number 0-65535")
        if port > 65535:
            self.fail("health.port", "must be a port number 0-65535")
        return HealthSettings(
            host=self.text(raw, "host", "health.host", "127.0.0.1") or "127.0.0.1",
            port=port,
            enabled=self.boolean(raw, "enabled", "health.enabled", True),
        )

    # -- routes ------------------------------------------------------------
    def routes(self, raw: Any, have_broker: bool) -> tuple[Route, ...] | None:
        if raw is None:
            self.fail("routes", "required (at least one route)")
            return None
        if not isinstance(raw, list) or not raw:
            self.fail("routes", "must be a non-empty list")
            return None
        out: list[Route] = []
        seen: set[str] = set()
        ok = True
        for i, item in enumerate(raw):
            path = f"routes[{i}]"
            if not isinstance(item, Mapping):
                self.fail(path, "must be a mapping")
                ok = False
                continue
            route = self.route(item, path, have_broker)
            if route is None:
                ok = False
                continue
            if route.id in seen:
                self.fail(f"{path}.id", f"duplicate route id {route.id!r}")
                ok = False
            seen.add(route.id)
            out.append(route)
        return tuple(out) if ok else None

    def route(self, raw: Mapping[str, Any], path: str, have_broker: bool) -> Route | None:
        before = len(self.problems)
        self.known(
            raw,
            {
                "id", "channels", "discover", "sources", "names", "ciphers", "data",
                "presence_snapshot", "targets",
            },
            path,
        )  # fmt: skip
        route_id = self.text(raw, "id", f"{path}.id")
        if route_id is None:
            if "id" not in raw:
                self.fail(f"{path}.id", "required")
        elif not _ROUTE_ID.match(route_id):
            self.fail(f"{path}.id", "must be 1-64 letters, digits, '_', '.' or '-'")
        channels = self.patterns(raw, "channels", f"{path}.channels")
        discovery = self.discovery(raw.get("discover"), f"{path}.discover")
        if not channels and discovery is None:
            self.fail(f"{path}.channels", "required (channel names or patterns, or discover)")
        sources_raw = self.str_list(raw, "sources", f"{path}.sources") or ("message",)
        sources: set[Source] = set()
        for i, src in enumerate(sources_raw):
            if src in SOURCES:
                sources.add(src)
            else:
                self.fail(f"{path}.sources[{i}]", f"must be one of {', '.join(SOURCES)}")
        names = self.patterns(raw, "names", f"{path}.names")
        data = self.text(raw, "data", f"{path}.data", "decoded")
        if data not in DATA_MODES:
            self.fail(f"{path}.data", f"must be one of {', '.join(DATA_MODES)}")
        ciphers = self.ciphers(raw.get("ciphers"), f"{path}.ciphers")
        snapshot = self.snapshot(raw.get("presence_snapshot"), f"{path}.presence_snapshot")
        if snapshot is not None and "presence" not in sources:
            self.fail(f"{path}.presence_snapshot", "needs 'presence' in sources")
        targets = self.targets(raw.get("targets"), f"{path}.targets", have_broker)
        if len(self.problems) != before or route_id is None or targets is None:
            return None
        return Route(
            id=route_id,
            channels=channels,
            targets=targets,
            sources=frozenset(sources),
            names=names,
            discovery=discovery,
            ciphers=ciphers,
            data=data,  # type: ignore[arg-type]
            presence_snapshot=snapshot,
        )

    def discovery(self, raw: Any, path: str) -> Discovery | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.fail(path, "must be a mapping with 'prefixes' and optional 'interval'")
            return None
        self.known(raw, {"prefixes", "interval"}, path)
        prefixes = self.str_list(raw, "prefixes", f"{path}.prefixes")
        if not prefixes:
            self.fail(f"{path}.prefixes", "required (at least one channel name prefix)")
        interval = self.number(raw, "interval", f"{path}.interval", 30.0, minimum=1.0)
        return Discovery(prefixes=prefixes, interval=interval)

    def ciphers(self, raw: Any, path: str) -> tuple[CipherRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail(path, "must be a list of {channels, key_env | key_file}")
            return ()
        out: list[CipherRule] = []
        for i, item in enumerate(raw):
            ipath = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.fail(ipath, "must be a mapping")
                continue
            advice = {
                "key": "a cipher key must not be written in the config file; "
                "use key_env (an environment variable name) or key_file"
            }
            self.known(item, {"channels", "key_env", "key_file"}, ipath, advice)
            channels = self.patterns(item, "channels", f"{ipath}.channels")
            if not channels:
                self.fail(f"{ipath}.channels", "required")
            key_text: str | None = None
            key_path = f"{ipath}.key_env"
            if item.get("key_env") is not None:
                env_name = item["key_env"]
                if not isinstance(env_name, str) or not env_name:
                    self.fail(key_path, "must be an environment variable name")
                elif not self.env.get(env_name):
                    self.fail(key_path, f"environment variable {env_name} is not set")
                else:
                    key_text = self.env[env_name]
            elif item.get("key_file") is not None:
                key_path = f"{ipath}.key_file"
                key_text = self.read_secret_file(item["key_file"], key_path)
            elif "key" not in item:
                self.fail(ipath, "needs key_env or key_file")
            if key_text is not None and _check_cipher_key(key_text, key_path, self) and channels:
                out.append(CipherRule(channels=channels, key=Secret(key_text)))
        return tuple(out)

    def snapshot(self, raw: Any, path: str) -> PresenceSnapshotSettings | None:
        if raw is None or raw is False:
            return None
        if raw is True:
            return PresenceSnapshotSettings()
        if not isinstance(raw, Mapping):
            self.fail(path, "must be true, false or a mapping with 'key'")
            return None
        self.known(raw, {"key"}, path)
        key = self.text(raw, "key", f"{path}.key", DEFAULT_PRESENCE_KEY)
        if key is None:
            return None
        self.template(key, f"{path}.key", PRESENCE_KEY_PLACEHOLDERS)
        return PresenceSnapshotSettings(key=key)

    def template(self, value: str, path: str, allowed: frozenset[str]) -> None:
        try:
            fields = [
                name for _, name, spec, conv in string.Formatter().parse(value) if name is not None
            ]
        except ValueError as exc:
            self.fail(path, f"invalid key template: {exc}")
            return
        for name in fields:
            if name not in allowed:
                known = ", ".join("{" + p + "}" for p in sorted(allowed))
                self.fail(path, f"unknown placeholder {{{name}}}; known: {known}")

    def targets(self, raw: Any, path: str, have_broker: bool) -> tuple[Target, ...] | None:
        if raw is None:
            self.fail(path, "required (at least one target)")
            return None
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a non-empty list")
            return None
        out: list[Target] = []
        for i, item in enumerate(raw):
            ipath = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.fail(ipath, "must be a mapping")
                continue
            kind = item.get("type")
            target: Target | None
            if kind == "celery":
                target = self.celery_target(item, ipath, have_broker)
            elif kind == "redis_stream":
                target = self.stream_target(item, ipath)
            else:
                self.fail(f"{ipath}.type", "required: 'celery' or 'redis_stream'")
                continue
            if target is not None:
                out.append(target)
        return tuple(out) if len(out) == len(raw) else None

    def celery_target(
        self, raw: Mapping[str, Any], path: str, have_broker: bool
    ) -> CeleryTarget | None:
        before = len(self.problems)
        self.known(
            raw,
            {"type", "task", "queue", "routing_key", "priority", "expires", "headers",
             "broker_url", "broker_url_file"},
            path,
        )  # fmt: skip
        task = self.text(raw, "task", f"{path}.task")
        if task is None:
            if "task" not in raw:
                self.fail(f"{path}.task", "required")
        elif not _TASK_NAME.match(task):
            self.fail(f"{path}.task", "must be a dotted task name such as 'app.tasks.handle'")
        priority: int | None = None
        if raw.get("priority") is not None:
            priority = self.integer(raw, "priority", f"{path}.priority", 0, minimum=0)
            if priority > 255:
                self.fail(f"{path}.priority", "must be between 0 and 255")
        expires: float | None = None
        if raw.get("expires") is not None:
            expires = self.number(raw, "expires", f"{path}.expires", 0.0, exclusive=True)
        headers: dict[str, str] = {}
        headers_raw = raw.get("headers")
        if headers_raw is not None:
            if not isinstance(headers_raw, Mapping):
                self.fail(f"{path}.headers", "must be a mapping of strings")
            else:
                for name, value in headers_raw.items():
                    if not isinstance(name, str) or not _HEADER_NAME.match(name):
                        self.fail(f"{path}.headers", f"invalid header name {name!r}")
                    elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
                        self.fail(f"{path}.headers.{name}", "must be a string or a number")
                    else:
                        headers[name] = str(value)
        broker: Secret | None = None
        if raw.get("broker_url") is not None or raw.get("broker_url_file") is not None:
            broker = self.url(
                raw, "broker_url", f"{path}.broker_url", None, BROKER_SCHEMES, required=True
            )
        elif not have_broker:
            self.fail(f"{path}.broker_url", "required (set CELERY_BROKER_URL or celery.broker_url)")
        if len(self.problems) != before or task is None:
            return None
        return CeleryTarget(
            task=task,
            queue=self.text(raw, "queue", f"{path}.queue"),
            routing_key=self.text(raw, "routing_key", f"{path}.routing_key"),
            priority=priority,
            expires=expires,
            headers=headers,
            broker_url=broker,
        )

    def stream_target(self, raw: Mapping[str, Any], path: str) -> StreamTarget | None:
        before = len(self.problems)
        self.known(raw, {"type", "key", "maxlen", "approximate", "layout", "url", "url_file"}, path)
        key = self.text(raw, "key", f"{path}.key")
        if key is None:
            if "key" not in raw:
                self.fail(f"{path}.key", "required (e.g. 'ably:{channel}')")
        else:
            self.template(key, f"{path}.key", KEY_PLACEHOLDERS)
        maxlen: int | None = None
        if raw.get("maxlen") is not None:
            maxlen = self.integer(raw, "maxlen", f"{path}.maxlen", 1, minimum=1)
        layout = self.text(raw, "layout", f"{path}.layout", "envelope")
        if layout not in LAYOUTS:
            self.fail(f"{path}.layout", f"must be one of {', '.join(LAYOUTS)}")
        url: Secret | None = None
        if raw.get("url") is not None or raw.get("url_file") is not None:
            url = self.url(raw, "url", f"{path}.url", None, STREAM_SCHEMES, required=True)
        approximate = self.boolean(raw, "approximate", f"{path}.approximate", True)
        if len(self.problems) != before or key is None:
            return None
        return StreamTarget(
            key=key,
            maxlen=maxlen,
            approximate=approximate,
            layout=layout,  # type: ignore[arg-type]
            url=url,
        )


def _check_cipher_key(text: str, path: str, parser: _Parser) -> bool:
    """Base64 (or base64url) of 16 or 32 bytes; the error never echoes the key."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        parser.fail(path, "cipher key is not valid base64")
        return False
    if len(raw) * 8 not in (128, 256):
        parser.fail(path, f"cipher key must be 128 or 256 bits, not {len(raw) * 8}")
        return False
    return True
