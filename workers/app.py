"""The Celery app factory of the worker helpers, configured from the environment.

Run a worker with ``celery -A workers worker`` (the ``workers`` package exposes
the app lazily as ``workers.celery``), or register the tasks on your own app
with :func:`workers.register_tasks` (your app's settings are left alone; the
tasks themselves ack late and are re-queued if their worker dies).

:func:`create_app` builds an app with reliable defaults: late acks, reject on
worker lost, prefetch 1, JSON only, broker socket/connect timeouts, a Redis
visibility timeout sized to the retry policy (longer than the longest retry
countdown, short enough that a publish lost with a crashed worker is
redelivered inside Ably's idempotent-publish window), frequent recovery of
unacknowledged Redis messages, and long-running tasks cancelled when the
broker connection is lost (they will be redelivered), and a worker consumer
that survives losing the broker while it holds unacknowledged messages
(:mod:`workers.broker_loss`: a Celery 5.7.0 bug), and, on a Redis broker,
a transport that moves each message from its queue to the unacknowledged index
in one step, so a worker SIGKILLed while fetching loses nothing
(:mod:`workers.redis_fetch`).

Environment variables
---------------------

Ably client:

``ABLY_KEY``
    API key ``appId.keyId:secret`` used by the tasks (never logged, never in results).
``ABLY_ENDPOINT``
    Ably endpoint (routing policy name or host, e.g. ``127.0.0.1`` for the emulator).
``ABLY_PORT``
    Port of the endpoint (the TLS port when ``ABLY_TLS`` is true).
``ABLY_TLS``
    ``true``/``false`` (default true; ``false`` for the local emulator).
``ABLY_USE_BINARY_PROTOCOL``
    ``true`` for msgpack (default), ``false`` for JSON.
``ABLY_CLIENT_OPTIONS``
    A JSON object of further ``ClientOptions`` keyword arguments, e.g.
    ``{"http_request_timeout": 5, "fallback_hosts": []}``; the variables above win.

Celery:

``CELERY_BROKER_URL``
    Broker URL (default ``redis://127.0.0.1:6379/0``; ``amqp://...`` for RabbitMQ).
``CELERY_RESULT_BACKEND``
    Result backend URL (default: the broker URL for a Redis broker, else ``rpc://``;
    empty string for no backend).
``ABLY_WORKER_SENTINEL_MASTER``
    With a ``sentinel://`` broker or result backend (kombu's form,
    ``sentinel://h1:26379;sentinel://h2:26379/0``): the name of the primary the
    Sentinels monitor (kombu's ``master_name`` transport option). Required there.

Worker behaviour (``ABLY_WORKER_*``; durations in seconds):

``ABLY_WORKER_QUEUE``
    Default queue the tasks are sent to and the worker consumes (default ``celery``).
``ABLY_WORKER_QUEUE_TYPE``
    RabbitMQ: ``classic`` (default) or ``quorum``, the type the worker declares its
    queues with. It must match the bridge target's ``queue_type`` for a queue both
    declare. Quorum queues use topic exchanges, so countdown retries go through
    Celery's native delayed delivery; an existing queue or exchange keeps its type
    (RabbitMQ refuses a redeclaration that differs: delete it or use a new name).
``ABLY_WORKER_MAX_RETRIES``
    Retries of a retryable failure before the task fails (default 8).
``ABLY_WORKER_RETRY_BASE_DELAY`` / ``ABLY_WORKER_RETRY_MAX_DELAY``
    Exponential backoff: first delay and cap (defaults 1 and 8).
``ABLY_WORKER_RETRY_JITTER``
    Fraction of each delay that is randomised, 0..1 (default 0.5).
``ABLY_WORKER_RATE_LIMIT_DELAY``
    Least delay after a 429 without ``Retry-After`` (default 1; a sent
    ``Retry-After`` is honoured, capped at 60).
``ABLY_WORKER_BUDGET_BASE_DELAY`` / ``ABLY_WORKER_BUDGET_MAX_DELAY``
    The per-process retry budget (:mod:`workers.budget`): after a retryable
    failure the worker holds all its Ably requests back for a backoff growing
    from the base (default 1) to the max (default 30), or the ``Retry-After``.
``ABLY_WORKER_PUBLISH_DEADLINE``
    Every retry of a publish starts within this many seconds of its first
    attempt (default 60); with the REST request budget it must fit in
    ``ABLY_WORKER_IDEMPOTENCY_WINDOW`` or the settings are refused.
``ABLY_WORKER_IDEMPOTENCY_WINDOW``
    Ably's idempotent-publish window (default 120: Ably detects a repeated
    message id for about 2 minutes after the original publish).
``ABLY_WORKER_VISIBILITY_TIMEOUT``
    Redis broker: seconds before an unacknowledged message is redelivered (default 35).
``ABLY_WORKER_RESTORE_INTERVAL``
    Redis broker: how often a worker looks for such messages (default 5).
``ABLY_WORKER_REDIS_KEY_PREFIX``
    Redis broker: a prefix for every broker key (to share one Redis database).
``ABLY_WORKER_BROKER_TIMEOUT``
    Broker and result-backend socket and connect timeouts (default 10).
``ABLY_WORKER_RESULT_EXPIRES``
    Seconds results are kept (default 86400). Token task results hold credentials.
``ABLY_WORKER_DEDUP_REDIS_URL``
    Redis for the consumer de-duplication marks (default: a Redis broker's URL,
    else ``redis://127.0.0.1:6379/0``).
``ABLY_WORKER_DEDUP_PREFIX`` / ``ABLY_WORKER_DEDUP_TTL``
    Key prefix (default ``ably-bridge``, the bridge's) and lifetime of a
    "processed" mark (default 604800, 7 days).

Stream consumer CLI (``python -m workers.streams``; flags override):

``ABLY_WORKER_STREAM_REDIS_URL``
    Redis holding the streams (default ``redis://127.0.0.1:6379/0``).
``ABLY_WORKER_STREAMS``
    Comma-separated stream keys to consume.
``ABLY_WORKER_STREAM_GROUP`` / ``ABLY_WORKER_STREAM_CONSUMER``
    Consumer group (default ``ably-workers``) and consumer name (default host:pid).
``ABLY_WORKER_STREAM_HANDLER``
    The handler as ``package.module:function``.
``ABLY_WORKER_STREAM_MAX_DELIVERIES``
    Deliveries of an entry before it is dead-lettered (default 5).
``ABLY_WORKER_STREAM_MIN_IDLE``
    Seconds an entry stays pending before another consumer claims it (default 60).
``ABLY_WORKER_STREAM_DEAD_LETTER``
    Dead-letter stream (default ``<stream>:dead``).
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

from celery import Celery

from ably_bridge import shortcuts
from workers.settings import WorkerSettings, queue_type_conf
from workers.tasks import register_tasks
from workers.unknown_tasks import dead_letter_unknown_tasks

__all__ = [
    "atomic_fetch_transport",
    "configure_app",
    "create_app",
    "default_app",
    "set_default_app",
]

log = logging.getLogger(__name__)

_default_lock = threading.Lock()
_default: Celery | None = None


def _transport_options(settings: WorkerSettings) -> dict[str, Any]:
    """The broker transport options of ``settings``."""
    timeout = settings.broker_timeout
    transport: dict[str, Any]
    if settings.redis_broker:
        transport = {
            "visibility_timeout": settings.visibility_timeout,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            # kombu's reliable fetch: a delivered message stays in the unacked index
            # until acked, and is restored after visibility_timeout if its worker died.
            "ack_emulation": True,
            # The restore runs under a Redis lock; a worker killed while holding it must
            # not stop every other worker's restores for kombu's default 300 s.
            "unacked_mutex_expire": max(5, int(settings.visibility_timeout)),
        }
        if settings.redis_key_prefix:
            transport["global_keyprefix"] = settings.redis_key_prefix
    else:
        transport = {"connect_timeout": timeout, "confirm_publish": True}
    return transport


def configure_app(app: Celery, settings: WorkerSettings) -> None:
    """Apply the reliable defaults of ``settings`` to ``app``'s configuration."""
    timeout = settings.broker_timeout
    transport = _transport_options(settings)
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_timeout": timeout,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "redis_socket_timeout": timeout,
        "redis_socket_connect_timeout": timeout,
        "result_expires": int(settings.result_expires),
        "task_track_started": False,
        # survives broker loss with unacked messages (Celery 5.7.0; see workers.broker_loss)
        "worker_consumer": "workers.broker_loss:Consumer",
    }
    fetch = atomic_fetch_transport(settings.broker_url)
    if fetch is not None:
        conf["broker_transport"] = fetch
        if _needs_default_tls(settings.broker_url):
            # (kombu applies this default to a rediss:// URL only when the scheme picks
            # the transport; a transport class given explicitly skips it)
            conf["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_NONE}
    conf.update(_sentinel_conf(settings))
    if settings.queue:
        conf["task_default_queue"] = settings.queue
    conf.update(queue_type_conf(settings.queue_type))
    app.conf.update(conf)


def _needs_default_tls(url: str) -> bool:
    return url.lower().startswith("rediss://") and "ssl_" not in url.partition("?")[2]


def _sentinel_conf(settings: WorkerSettings) -> dict[str, Any]:
    """A ``sentinel://`` broker or result backend: the primary's name in the transport
    options kombu's Sentinel transport and Celery's Sentinel backend read."""
    conf: dict[str, Any] = {}
    master = {"master_name": settings.sentinel_master}
    if settings.broker_url.lower().startswith("sentinel://"):
        conf["broker_transport_options"] = {**_transport_options(settings), **master}
    if (settings.result_backend or "").lower().startswith("sentinel://"):
        conf["result_backend_transport_options"] = master
    return conf


def atomic_fetch_transport(broker_url: str) -> str | None:
    """The transport class that fetches a Redis broker's messages atomically, or None.

    None for a broker that is not Redis, and when the shortcut
    ``kombu.redis_atomic_fetch`` is off (kombu outside its tested range): then
    kombu's own transport fetches, with its kill window (:mod:`workers.redis_fetch`).
    """
    scheme = broker_url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "sentinel"):
        return None
    if not shortcuts.enabled("kombu.redis_atomic_fetch"):
        return None
    name = "SentinelTransport" if scheme == "sentinel" else "Transport"
    return f"workers.redis_fetch:{name}"


def create_app(
    name: str = "ably-workers",
    settings: WorkerSettings | None = None,
    *,
    register: bool = True,
) -> Celery:
    """A Celery app configured from ``settings`` (default: the environment), tasks registered."""
    settings = settings or WorkerSettings.from_env()
    app = Celery(name, set_as_current=False)
    configure_app(app, settings)
    dead_letter_unknown_tasks(app, settings)
    if register:
        register_tasks(app, settings)
    log.debug("created Celery app %s with %r", name, settings)
    return app


def default_app() -> Celery:
    """The process-wide app from the environment (made on first use), or the one set."""
    global _default
    with _default_lock:
        if _default is None:
            _default = create_app()
        return _default


def set_default_app(app: Celery | None) -> None:
    """Make ``app`` the one producer helpers use when given none (None: back to the env)."""
    global _default
    with _default_lock:
        _default = app
