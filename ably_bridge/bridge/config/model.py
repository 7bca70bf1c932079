"""The bridge configuration model: the validated settings, as frozen dataclasses.

This module owns :class:`BridgeConfig` and everything in it - :class:`AblySettings`,
:class:`Route` and its targets (:class:`CeleryTarget`, :class:`StreamTarget`),
cipher rules, discovery and presence-snapshot settings, the delivery, dead-letter,
health and sharding settings - the vocabulary they share (:data:`SOURCES`, the key
template placeholders) and :class:`ConfigError`. It holds no parsing: reading a
file, environment overrides and validation live in
:mod:`~ably_bridge.bridge.config.parse` and its helpers, and the public entry points
(:func:`~ably_bridge.bridge.config.load_config` and friends) in
:mod:`~ably_bridge.bridge.config`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ably_bridge.bridge.secret import Secret
from ably_bridge.envelope.shape import message_action_name

__all__ = [
    "DEFAULT_PRESENCE_KEY",
    "KEY_PLACEHOLDERS",
    "PRESENCE_KEY_PLACEHOLDERS",
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
    "Source",
    "StreamTarget",
    "Target",
]

Source = Literal["message", "presence", "lifecycle"]
SOURCES: tuple[Source, ...] = ("message", "presence", "lifecycle")
KEY_PLACEHOLDERS = frozenset({"channel", "route", "app", "source"})
PRESENCE_KEY_PLACEHOLDERS = frozenset({"channel", "route", "app"})
DEFAULT_PRESENCE_KEY = "ably:presence:{channel}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every ``field.path: reason``."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")


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
    # Backfill: how far before a checkpoint to look for messages changed since (seconds).
    operations_lookback: float = 0.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    drain_timeout: float = 30.0  # seconds SIGTERM waits for the sink buffers to drain


@dataclass(frozen=True, slots=True)
class DeadLetterSettings:
    """The dead-letter stream: where undecodable, oversized or rejected events go."""

    stream: str = "ably-bridge:deadletter"
    maxlen: int = 100_000


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """The health/metrics HTTP endpoint (``host``: one address, or several joined by commas)."""

    host: str = "127.0.0.1"
    port: int = 8081
    enabled: bool = True
    # Required as a bearer token by /status (ABLY_BRIDGE_HEALTH_TOKEN or health.token_file).
    token: Secret | None = None


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
    # AMQP only: declare the queue as this RabbitMQ type (``x-queue-type``); None
    # leaves the declaration as Celery makes it (the broker's default, classic).
    queue_type: Literal["classic", "quorum"] | None = None

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
    # Message actions the route takes (``message.create``...); None: every action.
    actions: frozenset[str] | None = None
    discovery: Discovery | None = None
    ciphers: tuple[CipherRule, ...] = ()
    data: Literal["decoded", "encoded"] = "decoded"
    presence_snapshot: PresenceSnapshotSettings | None = None

    def takes(self, action: int | None) -> bool:
        """Whether the route takes a message with this action (TM5; None: a create)."""
        return self.actions is None or message_action_name(action) in self.actions


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The whole bridge configuration, validated; secrets held as :class:`Secret`."""

    app_id: str
    ably: AblySettings
    redis_url: Secret
    routes: tuple[Route, ...]
    celery_broker_url: Secret | None = None
    key_prefix: str = "ably-bridge"
    # redis.wait_replicas: a stream write counts as delivered once this many replicas
    # have it (WAIT), so a failover to one of them loses nothing delivered.
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 1.0
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
