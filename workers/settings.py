"""Worker settings: everything ``workers`` reads from the environment, in one frozen value.

This module owns :class:`WorkerSettings` and its parser :meth:`WorkerSettings.from_env`.
The variables themselves are documented in :mod:`workers.app` (the README copies
that docstring). Parsing is strict: a malformed number or boolean raises
``ValueError`` naming the variable (never its value, which may be a secret).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from ably_bridge.options import ClientOptions
from workers.retry import WORKER_RETRY, RetryPolicy

__all__ = ["DEFAULT_BROKER_URL", "QUEUE_TYPES", "WorkerSettings", "queue_type_conf"]

log = logging.getLogger(__name__)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
IDEMPOTENCY_WINDOW = 120.0  # Ably de-duplicates a message id for about 2 minutes
QUEUE_TYPES = ("classic", "quorum")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (true/false)")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def queue_type_conf(queue_type: str) -> dict[str, Any]:
    """The Celery settings under which an app declares its queues as ``queue_type``.

    For ``quorum``: the default queue and every queue created on demand get
    ``x-queue-type: quorum``, and their exchanges are topic exchanges, which
    Celery's native delayed delivery needs for countdown retries (a retry is
    routed through its ``celery_delayed_*`` exchanges instead of waiting in the
    worker's memory). The bridge declares a ``queue_type: quorum`` target's
    queue the same way, so both may declare it in any order. ``classic`` is
    Celery's own default declaration.
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"ABLY_WORKER_QUEUE_TYPE must be one of {', '.join(QUEUE_TYPES)}")
    if queue_type == "classic":
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "task_default_exchange_type": "topic",
    }


def _client_options(env: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    extra = env.get("ABLY_CLIENT_OPTIONS")
    if extra:
        try:
            parsed = json.loads(extra)
        except ValueError:
            raise ValueError("ABLY_CLIENT_OPTIONS must be a JSON object") from None
        if not isinstance(parsed, dict):
            raise ValueError("ABLY_CLIENT_OPTIONS must be a JSON object")
        unknown = set(parsed) - ClientOptions.option_names()
        if unknown:
            raise ValueError(f"ABLY_CLIENT_OPTIONS has unknown options: {sorted(unknown)}")
        options.update(parsed)
    if env.get("ABLY_ENDPOINT"):
        options["endpoint"] = env["ABLY_ENDPOINT"]
    tls = _bool(env, "ABLY_TLS")
    if tls is not None:
        options["tls"] = tls
    port = _int(env, "ABLY_PORT")
    if port is not None:
        options["tls_port" if options.get("tls", True) else "port"] = port
    binary = _bool(env, "ABLY_USE_BINARY_PROTOCOL")
    if binary is not None:
        options["use_binary_protocol"] = binary
    return options


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How the worker reaches Ably and the broker, and how it retries."""

    ably_key: str | None = field(default=None, repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict)
    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str | None = None
    retry: RetryPolicy = WORKER_RETRY
    publish_deadline: float = 60.0
    idempotency_window: float = IDEMPOTENCY_WINDOW
    visibility_timeout: float = 35.0
    broker_timeout: float = 10.0
    restore_interval: float = 5.0
    redis_key_prefix: str | None = None
    result_expires: float = 86_400.0
    queue: str | None = None
    queue_type: str = "classic"
    dedup_redis_url: str | None = None
    dedup_prefix: str = "ably-bridge"
    dedup_ttl: float = 7 * 24 * 3600.0
    budget_base_delay: float = 1.0
    budget_max_delay: float = 30.0
    sentinel_master: str | None = None

    def __post_init__(self) -> None:
        queue_type_conf(self.queue_type)  # (raises on an unknown type)
        sentinel = any(
            (url or "").lower().startswith("sentinel://")
            for url in (self.broker_url, self.result_backend)
        )
        if sentinel and not self.sentinel_master:
            raise ValueError(
                "a sentinel:// broker or result backend needs ABLY_WORKER_SENTINEL_MASTER "
                "(the name of the primary the Sentinels monitor)"
            )
        if self.queue_type != "classic" and self.redis_broker:
            raise ValueError("ABLY_WORKER_QUEUE_TYPE applies to AMQP (RabbitMQ) brokers only")
        if not 0 < self.budget_base_delay <= self.budget_max_delay <= 600:
            raise ValueError(
                "ABLY_WORKER_BUDGET_BASE_DELAY / _MAX_DELAY must satisfy 0 < base <= max <= 600"
            )
        budget = self.request_budget()
        if self.publish_deadline <= 0:
            raise ValueError("ABLY_WORKER_PUBLISH_DEADLINE must be positive")
        if self.publish_deadline + budget > self.idempotency_window:
            # The last retry must start early enough to finish inside Ably's window.
            raise ValueError(
                f"publish deadline {self.publish_deadline:.0f}s plus the REST request budget "
                f"{budget:.0f}s exceeds the idempotency window {self.idempotency_window:.0f}s"
            )
        slack = self.idempotency_window - self.publish_deadline - budget
        if self.redis_broker and self.visibility_timeout > slack:
            log.warning(
                "visibility timeout %.0fs: a publish redelivered after a worker crash may "
                "retry after Ably's %.0fs idempotency window",
                self.visibility_timeout,
                self.idempotency_window,
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Settings from ``env`` (default ``os.environ``); see :mod:`workers.app`."""
        env = os.environ if env is None else env
        broker = env.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
        backend = env.get("CELERY_RESULT_BACKEND")
        if backend is None:
            redis_like = ("redis://", "rediss://", "sentinel://")
            backend = broker if broker.lower().startswith(redis_like) else "rpc://"
        retries = _int(env, "ABLY_WORKER_MAX_RETRIES")
        policy = RetryPolicy(
            base=_float(env, "ABLY_WORKER_RETRY_BASE_DELAY", 1.0),
            multiplier=2.0,
            max_delay=_float(env, "ABLY_WORKER_RETRY_MAX_DELAY", 8.0),
            jitter=_float(env, "ABLY_WORKER_RETRY_JITTER", 0.5),
            max_retries=8 if retries is None else retries,
            rate_limit_delay=_float(env, "ABLY_WORKER_RATE_LIMIT_DELAY", 1.0),
        )
        return cls(
            ably_key=env.get("ABLY_KEY") or None,
            client_options=_client_options(env),
            broker_url=broker,
            result_backend=backend or None,
            retry=policy,
            publish_deadline=_float(env, "ABLY_WORKER_PUBLISH_DEADLINE", 60.0),
            idempotency_window=_float(env, "ABLY_WORKER_IDEMPOTENCY_WINDOW", IDEMPOTENCY_WINDOW),
            visibility_timeout=_float(env, "ABLY_WORKER_VISIBILITY_TIMEOUT", 35.0),
            broker_timeout=_float(env, "ABLY_WORKER_BROKER_TIMEOUT", 10.0),
            restore_interval=_float(env, "ABLY_WORKER_RESTORE_INTERVAL", 5.0),
            redis_key_prefix=env.get("ABLY_WORKER_REDIS_KEY_PREFIX") or None,
            result_expires=_float(env, "ABLY_WORKER_RESULT_EXPIRES", 86_400.0),
            queue=env.get("ABLY_WORKER_QUEUE") or None,
            queue_type=(env.get("ABLY_WORKER_QUEUE_TYPE") or "classic").strip().lower(),
            dedup_redis_url=env.get("ABLY_WORKER_DEDUP_REDIS_URL") or None,
            dedup_prefix=env.get("ABLY_WORKER_DEDUP_PREFIX") or "ably-bridge",
            dedup_ttl=_float(env, "ABLY_WORKER_DEDUP_TTL", 7 * 24 * 3600.0),
            budget_base_delay=_float(env, "ABLY_WORKER_BUDGET_BASE_DELAY", 1.0),
            budget_max_delay=_float(env, "ABLY_WORKER_BUDGET_MAX_DELAY", 30.0),
            sentinel_master=env.get("ABLY_WORKER_SENTINEL_MASTER") or None,
        )

    # -- derived facts -----------------------------------------------------------
    @property
    def redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://", "unix://", "sentinel://"))

    def request_budget(self) -> float:
        """The longest one REST call may take: the funnel's retry duration plus one request."""
        defaults = ClientOptions()
        duration = float(
            self.client_options.get("http_max_retry_duration", defaults.http_max_retry_duration)
        )
        request = float(
            self.client_options.get("http_request_timeout", defaults.http_request_timeout)
        )
        return duration + request

    def client_options_value(self) -> ClientOptions:
        """The :class:`ClientOptions` of the worker's REST client (key included)."""
        options = dict(self.client_options)
        if self.ably_key is not None:
            options["key"] = self.ably_key
        return ClientOptions(**options)

    def dedup_url(self) -> str:
        """Where the consumer guard keeps its marks: the setting, else a Redis broker."""
        if self.dedup_redis_url:
            return self.dedup_redis_url
        if self.broker_url.lower().startswith("sentinel://"):
            return _redis_sentinel_url(self.broker_url, self.sentinel_master or "")
        return self.broker_url if self.broker_url.startswith("redis") else DEFAULT_BROKER_URL

    def replace(self, **changes: Any) -> WorkerSettings:
        return replace(self, **changes)

    def __repr__(self) -> str:
        key = "<set>" if self.ably_key else None
        return (
            f"WorkerSettings(ably_key={key}, broker={_redact(self.broker_url)!r}, "
            f"client_options={sorted(self.client_options)}, retry={self.retry!r})"
        )


def _redis_sentinel_url(url: str, master: str) -> str:
    """kombu's ``sentinel://h1:p1;sentinel://h2:p2/db`` and the primary's name as the
    bridge's ``redis+sentinel://h1:p1,h2:p2/master/db`` (see ably_bridge.bridge.redis_connect)."""
    hosts, db, auth = [], "0", ""
    for part in url.split(";"):
        split = urlsplit(part.strip())
        hosts.append(f"{split.hostname}:{split.port or 26379}")
        if split.path.strip("/") and db == "0":
            db = split.path.strip("/")
        if split.password and not auth:
            auth = f"{split.username or ''}:{split.password}@"
    return f"redis+sentinel://{auth}{','.join(hosts)}/{master}/{db}"


def _redact(url: str) -> str:
    """A URL with any password replaced (broker URLs may carry credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
