"""The validating parser of the configuration: bridge-wide sections and env overrides.

This module owns :class:`Parser`, which turns a raw mapping (a parsed YAML or
TOML file, or a test's dict) into a :class:`~ably_bridge.bridge.config.model.BridgeConfig`,
collecting every problem as ``field.path: reason``. It reads the top level and the
``ably``, ``redis``, ``celery``, ``delivery``, ``dead_letter``, ``health`` and
``sharding`` sections, applies the environment overrides listed in
:data:`ENV_OVERRIDES` (an override wins over the file), and takes the Ably key only
from ``ABLY_KEY`` or a key file. Typed fields and secret sources come from
:class:`~ably_bridge.bridge.config.fields.FieldReader`, the routes from
:class:`~ably_bridge.bridge.config.routes.RouteParser`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ably_bridge.bridge.config.checks import (
    MAX_DEPTH,
    MAX_NODES,
    endpoint_problem,
    host_problem,
    scan_tree,
)
from ably_bridge.bridge.config.fields import BROKER_SCHEMES, STREAM_SCHEMES
from ably_bridge.bridge.config.model import (
    AblySettings,
    BridgeConfig,
    DeadLetterSettings,
    DeliverySettings,
    HealthSettings,
    RetrySettings,
    ShardingSettings,
)
from ably_bridge.bridge.config.routes import RouteParser
from ably_bridge.bridge.redis_connect import is_cluster_url
from ably_bridge.bridge.secret import Secret

__all__ = ["ENV_OVERRIDES", "Parser"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")

# Environment variable -> what it overrides (documentation and check-config output).
ENV_OVERRIDES: dict[str, str] = {
    "ABLY_KEY": "ably.key (secret)",
    "ABLY_KEY_FILE": "ably.key_file",
    "ABLY_ENDPOINT": "ably.endpoint",
    "ABLY_PORT": "ably.port",
    "ABLY_TLS": "ably.tls",
    "ABLY_APP_ID": "app_id",
    "REDIS_URL": "redis.url",
    "CELERY_BROKER_URL": "celery.broker_url",
    "ABLY_BRIDGE_SITE": "site",
    "ABLY_BRIDGE_KEY_PREFIX": "redis.key_prefix",
    "ABLY_BRIDGE_HEALTH_HOST": "health.host",
    "ABLY_BRIDGE_HEALTH_PORT": "health.port",
    "ABLY_BRIDGE_HEALTH_TOKEN": "health.token (secret; health.token_file)",
    "ABLY_BRIDGE_LOG_LEVEL": "log_level",
    "ABLY_BRIDGE_SHARDING": "sharding.mode",
    "ABLY_BRIDGE_REPLICA_INDEX": "sharding.replica_index",
    "ABLY_BRIDGE_REPLICAS": "sharding.replicas",
}
SHARDING_MODES = ("none", "static", "lease")
HOUR = 3600.0
DAY = 86400.0

_ABLY_KEY = re.compile(r"^([^.:\s]+)\.([^.:\s]+):(\S+)$")


class Parser(RouteParser):
    """Walks the raw mapping, collecting every problem with its field path."""

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
        self.known(
            redis_raw, {"url", "url_file", "key_prefix", "wait_replicas", "wait_timeout"}, "redis"
        )
        wait_replicas = self.integer(
            redis_raw, "wait_replicas", "redis.wait_replicas", 0, minimum=0, maximum=16
        )
        wait_timeout = self.number(
            redis_raw, "wait_timeout", "redis.wait_timeout", 1.0, minimum=0.0, maximum=60.0,
            exclusive=True,
        )  # fmt: skip
        redis_url = self.url(
            redis_raw, "url", "redis.url", "REDIS_URL", STREAM_SCHEMES, required=True
        )
        key_prefix = self.env.get("ABLY_BRIDGE_KEY_PREFIX") or self.text(
            redis_raw, "key_prefix", "redis.key_prefix", "ably-bridge"
        )
        braces = key_prefix is not None and ("{" in key_prefix or "}" in key_prefix)
        if braces and redis_url is not None and is_cluster_url(redis_url.reveal()):
            # (redis_keys places the hash tags itself)
            self.fail("redis.key_prefix", "must not contain braces on a Redis Cluster")
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
        routes = self.routes(raw.get("routes"), broker)
        self.scan(raw)
        if redis_url is None or not app_id or routes is None or key_prefix is None or site is None:
            return None
        return BridgeConfig(
            app_id=app_id,
            ably=ably,
            redis_url=redis_url,
            routes=routes,
            celery_broker_url=broker,
            key_prefix=key_prefix,
            redis_wait_replicas=wait_replicas,
            redis_wait_timeout=wait_timeout,
            site=site,
            log_level=log_level.upper(),
            log_format=log_format,  # type: ignore[arg-type]
            log_payloads=log_payloads,
            delivery=delivery,
            dead_letter=dead_letter,
            health=health,
            sharding=sharding,
        )

    def scan(self, raw: Mapping[str, Any]) -> None:
        """Refuse a credential written anywhere in the file, and a tree nested too deep."""
        found = scan_tree(raw)
        if found.too_deep is not None:
            self.fail(found.too_deep, f"nested deeper than {MAX_DEPTH} levels")
        if found.nodes > MAX_NODES:
            self.fail("<file>", f"more than {MAX_NODES:,} values")
        reported = {p.split(": ", 1)[0] for p in self.problems}
        for path, forms in found.credentials:
            if path not in reported:
                self.fail(
                    path,
                    f"contains {' and '.join(forms)}: a credential must not be written in the "
                    "config file; set it through the environment or a *_file setting",
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
        endpoint = self.endpoint(raw)
        binary = self.boolean(raw, "use_binary_protocol", "ably.use_binary_protocol", True)
        # ABLY_PORT and ABLY_TLS, as the tools and the workers read them (the local emulator).
        raw = {**raw, **self._port_and_tls_from_env()}
        port: int | None = None
        if raw.get("port") is not None:
            port = self.port(raw, "port", "ably.port", 443, minimum=1)
        tls = self.boolean(raw, "tls", "ably.tls", True)
        settings = AblySettings(
            key=key,
            endpoint=endpoint,
            use_binary_protocol=binary,
            port=port,
            tls=tls,
            channels_per_connection=self.integer(
                raw,
                "channels_per_connection",
                "ably.channels_per_connection",
                200,
                maximum=10_000,
            ),
            max_connections=self.integer(
                raw, "max_connections", "ably.max_connections", 0, minimum=0, maximum=10_000
            ),
            message_rate_budget=self.number(
                raw,
                "message_rate_budget",
                "ably.message_rate_budget",
                50.0,
                exclusive=True,
                maximum=1e6,
            ),
        )
        return settings, app_id

    def _port_and_tls_from_env(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        port = (self.env.get("ABLY_PORT") or "").strip()
        if port:
            if port.isascii() and port.isdigit():
                found["port"] = int(port)  # (the range is checked as ably.port)
            else:
                self.fail("ABLY_PORT", f"must be a port number, not {port[:20]!r}")
        tls = (self.env.get("ABLY_TLS") or "").strip().lower()
        if tls:
            if tls in ("true", "1", "yes", "false", "0", "no"):
                found["tls"] = tls in ("true", "1", "yes")
            else:
                self.fail("ABLY_TLS", f"must be true or false, not {tls!r}")
        return found

    def endpoint(self, raw: Mapping[str, Any]) -> str | None:
        """``ably.endpoint`` (or ``ABLY_ENDPOINT``): a routing policy name or a host."""
        endpoint, where = self.env.get("ABLY_ENDPOINT"), "ABLY_ENDPOINT"
        if not endpoint:
            endpoint, where = self.text(raw, "endpoint", "ably.endpoint"), "ably.endpoint"
        if endpoint is not None:
            problem = endpoint_problem(endpoint)
            if problem is not None:
                self.fail(where, problem)
                return None
        return endpoint

    def delivery(self, raw: Mapping[str, Any]) -> DeliverySettings:
        p = "delivery"
        self.known(
            raw,
            {
                "batch_size", "buffer_size", "dedup_ttl", "dedup_window", "max_event_bytes",
                "retry", "drain_timeout", "operations_lookback",
            },
            p,
        )  # fmt: skip
        retry_raw = self.section(raw, "retry", f"{p}.retry")
        rp = f"{p}.retry"
        self.known(retry_raw, {"initial", "multiplier", "max_delay", "jitter", "max_attempts"}, rp)
        initial = self.number(
            retry_raw, "initial", f"{rp}.initial", 0.5, exclusive=True, maximum=HOUR
        )
        max_delay = self.number(
            retry_raw, "max_delay", f"{rp}.max_delay", 30.0, exclusive=True, maximum=DAY
        )
        if max_delay < initial:
            self.fail(f"{rp}.max_delay", "must be >= retry.initial")
        jitter = self.number(retry_raw, "jitter", f"{rp}.jitter", 0.5)
        if jitter > 1:
            self.fail(f"{rp}.jitter", "must be between 0 and 1")
        retry = RetrySettings(
            initial=initial,
            multiplier=self.number(
                retry_raw, "multiplier", f"{rp}.multiplier", 2.0, minimum=1.0, maximum=100.0
            ),
            max_delay=max_delay,
            jitter=min(jitter, 1.0),
            max_attempts=self.integer(
                retry_raw, "max_attempts", f"{rp}.max_attempts", 0, minimum=0, maximum=1_000_000
            ),
        )
        return DeliverySettings(
            batch_size=self.integer(raw, "batch_size", f"{p}.batch_size", 500, maximum=100_000),
            buffer_size=self.integer(
                raw, "buffer_size", f"{p}.buffer_size", 10_000, maximum=10_000_000
            ),
            dedup_ttl=self.number(
                raw, "dedup_ttl", f"{p}.dedup_ttl", 3600.0, exclusive=True, maximum=30 * DAY
            ),
            dedup_window=self.integer(
                raw, "dedup_window", f"{p}.dedup_window", 100_000, minimum=0, maximum=100_000_000
            ),
            max_event_bytes=self.integer(
                raw,
                "max_event_bytes",
                f"{p}.max_event_bytes",
                1_048_576,
                minimum=256,
                maximum=512 * 1_048_576,
            ),
            retry=retry,
            operations_lookback=self.number(
                raw, "operations_lookback", f"{p}.operations_lookback", 0.0, maximum=30 * DAY
            ),
            drain_timeout=self.number(
                raw, "drain_timeout", f"{p}.drain_timeout", 30.0, maximum=HOUR
            ),
        )

    def sharding(self, raw: Mapping[str, Any]) -> ShardingSettings:
        p = "sharding"
        self.known(raw, {"mode", "shards", "lease_ttl", "replica_index", "replicas"}, p)
        mode = self.env.get("ABLY_BRIDGE_SHARDING") or self.text(raw, "mode", f"{p}.mode", "none")
        if mode not in SHARDING_MODES:
            self.fail(f"{p}.mode", f"must be one of {', '.join(SHARDING_MODES)}")
            mode = "none"
        shards = self.integer(raw, "shards", f"{p}.shards", 64, maximum=4096)
        lease_ttl = self.number(raw, "lease_ttl", f"{p}.lease_ttl", 10.0, minimum=0.5, maximum=HOUR)
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
            if not value.isascii() or not value.isdigit() or not minimum <= int(value) <= 4096:
                self.fail(env_name, f"must be an integer from {minimum} to 4096")
                return None
            return int(value)
        if raw.get(key) is None:
            return None
        return self.integer(raw, key, f"{path}.{key}", minimum, minimum=minimum, maximum=4096)

    def health_hosts(self, raw: Mapping[str, Any]) -> str:
        """``health.host``: one address, or several (a list, or separated by commas)."""
        path = "health.host"
        value: Any = raw.get("host")
        if self.env.get("ABLY_BRIDGE_HEALTH_HOST"):
            value, path = self.env["ABLY_BRIDGE_HEALTH_HOST"], "ABLY_BRIDGE_HEALTH_HOST"
        if value is None:
            return "127.0.0.1"
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not value or len(value) > 8:
            self.fail(path, "must be a host name or an IP address, or a list of up to 8")
            return "127.0.0.1"
        hosts: list[str] = []
        for host in value:
            problem = host_problem(host.strip()) if isinstance(host, str) else "must be a string"
            if problem is not None:
                self.fail(path, problem)
            else:
                hosts.append(host.strip())
        return ",".join(hosts) or "127.0.0.1"

    def dead_letter(self, raw: Mapping[str, Any]) -> DeadLetterSettings:
        self.known(raw, {"stream", "maxlen"}, "dead_letter")
        return DeadLetterSettings(
            stream=self.text(raw, "stream", "dead_letter.stream", "ably-bridge:deadletter")
            or "ably-bridge:deadletter",
            maxlen=self.integer(raw, "maxlen", "dead_letter.maxlen", 100_000, maximum=10**10),
        )

    def health(self, raw: Mapping[str, Any]) -> HealthSettings:
        advice = {
            "token": "a token must not be written in the config file; "
            "set ABLY_BRIDGE_HEALTH_TOKEN or health.token_file"
        }
        self.known(raw, {"host", "port", "enabled", "token_file"}, "health", advice)
        port = self.port(raw, "port", "health.port", 8081, minimum=0)
        env_port = self.env.get("ABLY_BRIDGE_HEALTH_PORT")
        if env_port:
            if env_port.isascii() and env_port.isdigit() and int(env_port) <= 65535:
                port = int(env_port)
            else:
                self.fail("ABLY_BRIDGE_HEALTH_PORT", "must be a port number 0-65535")
        return HealthSettings(
            host=self.health_hosts(raw),
            port=port,
            enabled=self.boolean(raw, "enabled", "health.enabled", True),
            token=self.health_token(raw),
        )

    def health_token(self, raw: Mapping[str, Any]) -> Secret | None:
        """``ABLY_BRIDGE_HEALTH_TOKEN`` or ``health.token_file``: 16 to 256 printable ASCII
        characters without spaces."""
        path, text = "ABLY_BRIDGE_HEALTH_TOKEN", self.env.get("ABLY_BRIDGE_HEALTH_TOKEN")
        if not text and raw.get("token_file") is not None:
            path, text = (
                "health.token_file",
                self.read_secret_file(raw["token_file"], "health.token_file"),
            )
        if not text:
            return None
        if not (
            16 <= len(text) <= 256 and text.isascii() and text.isprintable() and " " not in text
        ):
            self.fail(path, "a token of 16 to 256 printable ASCII characters without spaces")
            return None
        return Secret(text)  # (scrubbed from logs from now on)
