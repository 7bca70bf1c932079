"""Redis for the dev stack: the user's (``REDIS_URL``/``--redis-url``) or a redis-server of its own.

This module owns :func:`provision`, which returns a :class:`DevRedis`:

* with a URL, it checks that the server answers PING (and that the broker's
  database can be selected) or raises :class:`RedisUnavailable` saying so;
  the run's keys get a random prefix (:class:`~ably_bridge.devstack.layout.DevLayout`)
  and :meth:`DevRedis.close` deletes them - nothing else is touched;
* without one, it starts ``redis-server`` from ``PATH`` on a free port of
  127.0.0.1 with persistence off (``--save "" --appendonly no``) as a
  supervised child, and stops it in :meth:`DevRedis.close`;
* with a Redis Cluster URL (``redis+cluster://``), the streams, checkpoints,
  leases and the worker guard's marks go to the cluster under a per-run
  prefix (deleted on exit, as above), and a redis-server of its own is
  started for the Celery broker only (kombu has no cluster transport);
* with neither, :class:`RedisUnavailable` says what to install.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from ably_bridge.bridge.redis_connect import is_cluster_url, open_redis
from ably_bridge.bridge.redis_keys import is_cluster_client
from ably_bridge.bridge.sinks.celery_redis import sent_mark
from ably_bridge.devstack.layout import DevLayout, redacted
from ably_bridge.devstack.processes import Child

__all__ = [
    "INSTALL_HINT",
    "DevRedis",
    "RedisUnavailable",
    "free_port",
    "ping",
    "provision",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install redis-server (apt-get install redis-server, or brew install redis) "
    "or set REDIS_URL to a Redis the dev stack may use"
)


class RedisUnavailable(Exception):
    """No Redis to use; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ping(url: str, timeout: float = 2.0) -> str | None:
    """None when the Redis (or Redis Cluster) at ``url`` answers PING, else why it does not."""
    try:
        client = open_redis(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as exc:
        return f"not a Redis URL ({exc})"
    except (redis.RedisError, RedisClusterException) as exc:  # a cluster connects at once
        return str(exc) or type(exc).__name__
    try:
        client.ping()
    except (redis.RedisError, RedisClusterException) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def _broker_keys(queue: str, prefix: str) -> list[str]:
    """The Redis keys (patterns) kombu makes for one queue: the list, priority lists,
    bindings; the bridge's push-once marks of its tasks on that queue; and the workers'
    fetch claims (:mod:`workers.redis_fetch`; they would expire with the visibility
    timeout, and the dev stack's broker database is its own)."""
    from workers.redis_fetch import claim_key

    return [
        queue,
        f"{queue}\x06\x16*",  # kombu's priority sub-queues
        f"_kombu.binding.{queue}",
        f"_kombu.binding_permanent.{queue}",
        sent_mark(prefix, queue, "*"),
        claim_key("unacked", "*"),  # kombu's default unacked key, as the dev worker uses
    ]


def _delete_matching(client: redis.Redis, patterns: list[str]) -> int:
    """Delete the keys matching ``patterns`` (every primary of a cluster); the count."""
    keys: set[bytes] = set()
    for pattern in patterns:
        if is_cluster_client(client):
            found = client.scan_iter(match=pattern, count=500, target_nodes="primaries")
        else:
            found = client.scan_iter(match=pattern, count=500)
        keys.update(found)
    ordered = sorted(keys)
    deleted = 0
    for start in range(0, len(ordered), 500):
        deleted += int(client.delete(*ordered[start : start + 500]))  # split by slot
    return deleted


@dataclass
class DevRedis:
    """The Redis of one run: its layout, and the redis-server child when we started one
    (the whole Redis; or, beside a user's Redis Cluster, the Celery broker only)."""

    layout: DevLayout
    server: Child | None = None

    @property
    def description(self) -> str:
        url = redacted(self.layout.data_url)
        if self.layout.owned_redis and self.server is not None:
            return f"{url} (redis-server started by ably-bridge dev, pid {self.server.pid})"
        return f"{url} (keys under {self.layout.prefix}:*, removed on exit)"

    @property
    def broker_started(self) -> bool:
        """The Celery broker is a redis-server this run started (and stops)."""
        return self.server is not None

    def cleanup_keys(self) -> int:
        """Delete this run's keys from a Redis we do not own (nothing else); the count."""
        layout = self.layout
        if layout.owned_redis:
            return 0
        places = [(layout.data_url, layout.key_patterns)]
        if self.server is None:  # the broker is a database of the user's Redis
            places.append((layout.broker_url, _broker_keys(layout.queue, layout.prefix)))
        deleted = 0
        for url, patterns in places:
            try:
                client = open_redis(url, socket_timeout=5, socket_connect_timeout=5)
            except (redis.RedisError, RedisClusterException) as exc:
                log.warning("could not remove the dev keys from %s: %s", redacted(url), exc)
                continue
            try:
                deleted += _delete_matching(client, patterns)
            except (redis.RedisError, RedisClusterException) as exc:
                log.warning("could not remove the dev keys from %s: %s", redacted(url), exc)
            finally:
                client.close()
        return deleted

    def close(self) -> None:
        """Remove the run's keys (a user's Redis) and stop the redis-server we started."""
        if not self.layout.owned_redis:
            removed = self.cleanup_keys()
            log.info("removed %d dev key(s) from %s", removed, redacted(self.layout.data_url))
        if self.server is not None:
            self.server.stop(timeout=10)


def _check_url(url: str, run_id: str) -> DevRedis:
    layout = DevLayout.for_shared_redis(url, run_id)
    problem = ping(layout.data_url)
    if problem is not None:
        raise RedisUnavailable(_unanswered(url, problem))
    problem = ping(layout.broker_url)
    if problem is not None:
        raise RedisUnavailable(
            f"the Celery broker database {redacted(layout.broker_url)} cannot be used "
            f"({problem}); the dev stack needs the database after the one in the URL"
        )
    return DevRedis(layout)


def _unanswered(url: str, problem: str) -> str:
    return (
        f"the Redis at {redacted(url)} does not answer ({problem}); "
        "start it, fix REDIS_URL/--redis-url, or unset it to let ably-bridge dev "
        "start a redis-server of its own"
    )


def _check_cluster(
    url: str, run_id: str, log_dir: Path, which: Callable[[str], str | None]
) -> DevRedis:
    """A user's Redis Cluster for the data, and a redis-server of ours for the broker."""
    problem = ping(url)
    if problem is not None:
        raise RedisUnavailable(_unanswered(url, problem))
    if which("redis-server") is None:
        raise RedisUnavailable(
            "on a Redis Cluster the dev stack starts a redis-server of its own for the Celery "
            "broker (kombu has no cluster transport), and there is no redis-server on PATH: "
            "install redis-server (apt-get install redis-server, or brew install redis)"
        )
    broker = start_server(log_dir, which=which)
    layout = DevLayout.for_cluster(url, broker.layout.data_url, run_id)
    return DevRedis(layout, server=broker.server)


def start_server(
    log_dir: Path,
    *,
    which: Callable[[str], str | None] = shutil.which,
    attempts: int = 3,
    timeout: float = 10.0,
) -> DevRedis:
    """Start ``redis-server`` from PATH on a free port and wait until it answers."""
    program = which("redis-server")
    if program is None:
        raise RedisUnavailable(f"no REDIS_URL and no redis-server on PATH: {INSTALL_HINT}")
    last_problem = "did not start"
    for attempt in range(attempts):
        port = free_port()
        argv = [
            program, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(log_dir),
        ]  # fmt: skip
        child = Child("redis", argv, log_dir / "redis.log", cwd=log_dir, stop_timeout=10)
        try:
            child.start()
        except OSError as exc:
            raise RedisUnavailable(f"cannot run {program}: {exc}; {INSTALL_HINT}") from None
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.exited() is not None:
                last_problem = "exited: " + " | ".join(child.tail(3))
                break
            if ping(url, timeout=0.5) is None:
                log.info("redis-server on port %d (attempt %d)", port, attempt + 1)
                return DevRedis(DevLayout.for_owned_redis(url), server=child)
            time.sleep(0.05)
        else:
            last_problem = f"no answer within {timeout:.0f}s"
        child.stop(timeout=5)
    raise RedisUnavailable(f"redis-server {last_problem} (log: {log_dir / 'redis.log'})")


def provision(
    redis_url: str | None,
    *,
    run_id: str,
    log_dir: Path,
    which: Callable[[str], str | None] = shutil.which,
) -> DevRedis:
    """The Redis of a run: ``redis_url`` if given (it must answer; a cluster gets a
    redis-server of ours beside it for the broker), else our own redis-server."""
    if redis_url and is_cluster_url(redis_url):
        return _check_cluster(redis_url, run_id, log_dir, which)
    if redis_url:
        return _check_url(redis_url, run_id)
    return start_server(log_dir, which=which)
