"""Where the dev stack puts things: the names every piece of it agrees on.

This module owns :class:`DevLayout`, a frozen value computed once by the
stack and handed (as environment variables, :meth:`DevLayout.worker_env`) to
the children: the Redis URLs of the data and of the Celery broker, the key
prefix that fences the run's keys off from anything else in that Redis, the
stream and queue names, the dev task's name and the keys where the dev
worker records what it handled. It imports nothing heavy, so the Celery
worker module and the summary can both use it.

With a redis-server of its own, the stack uses the fixed prefix
``ably-dev``; on a Redis given by ``REDIS_URL``/``--redis-url`` the prefix
carries a random run id (``ably-dev:<run>``), the broker lives in the next
database number, and the queue is per run too, so a user's data is never
read, changed or deleted. On a Redis Cluster (``redis+cluster://``) the
run's keys get the same per-run prefix on the cluster, and the Celery broker
is a redis-server the stack starts (:meth:`DevLayout.for_cluster`): kombu has
no cluster transport.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ably_bridge.bridge.secret import redact_url

__all__ = [
    "CHAT_CHANNEL",
    "DEV_APP",
    "ENV_PREFIX",
    "ENV_REDIS_URL",
    "PUBLISHER_CLIENT_ID",
    "TASK_NAME",
    "DevLayout",
    "redacted",
    "with_db",
]

TASK_NAME = "dev.chat_event"
CHAT_CHANNEL = "chat:lobby"
PUBLISHER_CLIENT_ID = "dev-publisher"
ENV_PREFIX = "ABLY_DEV_PREFIX"
ENV_REDIS_URL = "ABLY_DEV_REDIS_URL"

# The emulator's development app: the same app and key as deploy/compose/emulator-app.json,
# so ABLY_KEY=dev.root:dev-secret-not-for-production works with both local stacks.
DEV_APP: dict[str, object] = {
    "appId": "dev",
    "keys": [{"id": "root", "value": "dev-secret-not-for-production", "capability": '{"*":["*"]}'}],
    "namespaces": [{"id": "persisted", "persisted": True}],
}


def _db_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        raw = dict(parse_qsl(parts.query)).get("db", "0")
    else:
        raw = parts.path.strip("/")
    return int(raw) if raw.isdigit() else 0


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` (credentials and other query fields kept)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":  # unix:///path/redis.sock?db=N
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def redacted(url: str) -> str:
    """``url`` with any credential replaced by ``***`` (for printing; the bridge's one parser)."""
    return redact_url(url)


@dataclass(frozen=True)
class DevLayout:
    """The run's Redis URLs and key names (see the module docstring)."""

    data_url: str
    broker_url: str
    prefix: str
    queue: str
    owned_redis: bool

    @classmethod
    def for_owned_redis(cls, url: str) -> DevLayout:
        """A redis-server of our own: fixed names, data in DB 0, broker in DB 1."""
        return cls(
            data_url=with_db(url, 0),
            broker_url=with_db(url, 1),
            prefix="ably-dev",
            queue="ably-dev",
            owned_redis=True,
        )

    @classmethod
    def for_shared_redis(cls, url: str, run_id: str) -> DevLayout:
        """Somebody's Redis: per-run prefix and queue, broker in the next database."""
        db = _db_of(url)
        return cls(
            data_url=url,
            broker_url=with_db(url, (db + 1) % 16),
            prefix=f"ably-dev:{run_id}",
            queue=f"ably-dev-{run_id}",
            owned_redis=False,
        )

    @classmethod
    def for_cluster(cls, url: str, broker_url: str, run_id: str) -> DevLayout:
        """A user's Redis Cluster for the data (per-run prefix) and our own broker."""
        return cls(
            data_url=url,
            broker_url=with_db(broker_url, 0),
            prefix=f"ably-dev:{run_id}",
            queue=f"ably-dev-{run_id}",
            owned_redis=False,
        )

    @property
    def key_patterns(self) -> list[str]:
        """SCAN patterns of every key of the run in its data Redis: ``<p>:*`` and, on a
        cluster, the bridge's control keys tagged ``{<p>}:*`` (bridge.redis_keys)."""
        return [f"{self.prefix}:*", f"{{{self.prefix}}}:*"]

    # -- keys ---------------------------------------------------------------------
    @property
    def stream_key(self) -> str:
        """The Redis Stream of every ``chat:*`` event."""
        return f"{self.prefix}:chat"

    @property
    def dead_letter_key(self) -> str:
        return f"{self.prefix}:deadletter"

    @property
    def tasks_key(self) -> str:
        """A hash: handled events per source, incremented by the dev task."""
        return f"{self.prefix}:dev:tasks"

    @property
    def handled_key(self) -> str:
        """A set: the ids of the events the dev task handled."""
        return f"{self.prefix}:dev:handled"

    @property
    def results_key(self) -> str:
        """A hash: event id -> what the dev task (and the user's handler) did, as JSON."""
        return f"{self.prefix}:dev:results"

    @property
    def worker_ready_key(self) -> str:
        """Set by the dev worker when Celery says it is ready."""
        return f"{self.prefix}:dev:worker-ready"

    def worker_env(self) -> dict[str, str]:
        """What the dev worker module reads to find its Redis and keys."""
        return {ENV_REDIS_URL: self.data_url, ENV_PREFIX: self.prefix}

    @classmethod
    def from_worker_env(cls, env: Mapping[str, str] | None = None) -> DevLayout:
        """The layout as the dev worker sees it (defaults for a bare import of the module)."""
        env = os.environ if env is None else env
        data_url = env.get(ENV_REDIS_URL) or "redis://127.0.0.1:6379/0"
        prefix = env.get(ENV_PREFIX) or "ably-dev"
        return cls(
            data_url=data_url,
            broker_url=env.get("CELERY_BROKER_URL") or data_url,
            prefix=prefix,
            queue=env.get("ABLY_WORKER_QUEUE") or "ably-dev",
            owned_redis=False,
        )
