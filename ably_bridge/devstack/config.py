"""The dev stack's bridge configuration and the environment of its children.

This module owns :func:`sample_config` (the bridge configuration of a run as
a mapping: ``chat:*`` messages and presence into one Redis Stream *and* the
dev Celery task), :func:`write_config` (that mapping as a commented YAML file
that ``ably-bridge check-config`` accepts) and :func:`child_env` (the
environment of the bridge and the worker: the dev key, the Redis and broker
URLs, and nothing inherited that could point them elsewhere) and
:func:`write_env_file` (the variables your own shell, producer or worker needs
to reach the run: ``set -a; . ./.ably-dev.env; set +a``).

``chat:lobby`` is named outright, so the bridge attaches it at once; every
other ``chat:`` channel is discovered through the emulator's channel
enumeration every two seconds (and backfilled from history), so a message
published anywhere under ``chat:`` reaches the stream and the task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ably_bridge.devstack.layout import CHAT_CHANNEL, TASK_NAME, DevLayout
from ably_bridge.devstack.layout import redacted as _redacted

__all__ = [
    "ENV_FILE_VARIABLES",
    "ROUTE_ID",
    "child_env",
    "remove_env_file",
    "sample_config",
    "write_config",
    "write_env_file",
]

ROUTE_ID = "chat"
DISCOVERY_INTERVAL = 2
# Inherited variables that would point a child at another Ably, Redis or broker.
_SCRUBBED_PREFIXES = ("ABLY_", "CELERY_", "REDIS_")
_SCRUBBED_NAMES = frozenset({"REDIS_URL"})


def _has_password(url: str) -> bool:
    return _redacted(url) != url


def sample_config(layout: DevLayout, *, emulator_port: int, health_port: int) -> dict[str, Any]:
    """The bridge configuration of a run (URLs with a password are left to the environment)."""
    redis_section: dict[str, Any] = {"key_prefix": layout.prefix}
    if not _has_password(layout.data_url):
        redis_section = {"url": layout.data_url, **redis_section}
    celery_section: dict[str, Any] = {}
    if not _has_password(layout.broker_url):
        celery_section["broker_url"] = layout.broker_url
    config: dict[str, Any] = {
        "site": "ably-dev",
        "log_level": "INFO",
        "log_format": "text",
        "ably": {
            "endpoint": "127.0.0.1",
            "port": emulator_port,
            "tls": False,
            "use_binary_protocol": True,
        },
        "redis": redis_section,
    }
    if celery_section:
        config["celery"] = celery_section
    config.update(
        {
            "delivery": {
                "drain_timeout": 5,
                "retry": {"initial": 0.2, "multiplier": 2.0, "max_delay": 2, "jitter": 0.5},
            },
            "dead_letter": {"stream": layout.dead_letter_key, "maxlen": 10000},
            "health": {"host": "127.0.0.1", "port": health_port},
            "routes": [
                {
                    "id": ROUTE_ID,
                    "channels": [CHAT_CHANNEL, "chat:*"],
                    "discover": {"prefixes": ["chat:"], "interval": DISCOVERY_INTERVAL},
                    "sources": ["message", "presence"],
                    "targets": [
                        {"type": "redis_stream", "key": layout.stream_key, "maxlen": 10000},
                        {"type": "celery", "task": TASK_NAME, "queue": layout.queue},
                    ],
                }
            ],
        }
    )
    return config


_HEADER = """\
# The bridge configuration of one `ably-bridge dev` run (generated; edit a copy).
# Secrets and hosts come from the environment the dev command gives the bridge:
#   ABLY_KEY (the local emulator's dev key), REDIS_URL, CELERY_BROKER_URL.
# Route "chat": messages and presence of chat:lobby and of every chat:* channel
# (discovered every {interval} s) go to the Redis Stream {stream}
# and to the Celery task {task} on queue {queue}
# (ably_bridge/devstack/worker.py).
# Check it:  ably-bridge check-config {path}
"""


def write_config(
    directory: Path, layout: DevLayout, *, emulator_port: int, health_port: int
) -> Path:
    """Write the run's ``bridge.yaml`` into ``directory`` and return its path."""
    path = directory / "bridge.yaml"
    config = sample_config(layout, emulator_port=emulator_port, health_port=health_port)
    header = _HEADER.format(
        interval=DISCOVERY_INTERVAL,
        stream=layout.stream_key,
        task=TASK_NAME,
        queue=layout.queue,
        path=path,
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def child_env(
    layout: DevLayout,
    *,
    ably_key: str,
    emulator_port: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of the bridge and worker children of a run."""
    base = os.environ if base is None else base
    env = {
        name: value
        for name, value in base.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED_NAMES
    }
    env.update(
        {
            "ABLY_KEY": ably_key,
            "ABLY_ENDPOINT": "127.0.0.1",
            "ABLY_PORT": str(emulator_port),
            "ABLY_TLS": "false",
            "REDIS_URL": layout.data_url,
            "CELERY_BROKER_URL": layout.broker_url,
            "CELERY_RESULT_BACKEND": "",  # the dev task's results are not kept
            "ABLY_WORKER_QUEUE": layout.queue,
            "ABLY_WORKER_DEDUP_REDIS_URL": layout.data_url,
            "ABLY_WORKER_DEDUP_PREFIX": layout.prefix,
            "PYTHONUNBUFFERED": "1",
            **layout.worker_env(),
        }
    )
    return env


# What a shell, a producer or a worker of your own needs to use the run's stack.
ENV_FILE_VARIABLES = (
    "ABLY_KEY",
    "ABLY_ENDPOINT",
    "ABLY_PORT",
    "ABLY_TLS",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "ABLY_WORKER_QUEUE",
)
_ENV_FILE_HEADER = """\
# Written by ably-bridge dev; removed when it stops. Load it into a shell with
#   set -a; . {path}; set +a
# and the ably-bridge tools, workers.producers and celery -A workers use this stack.
"""


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """Write the run's client variables to ``path`` (mode 0600) as ``NAME='value'`` lines."""
    lines = [_ENV_FILE_HEADER.format(path=path)]
    for name in ENV_FILE_VARIABLES:
        value = env.get(name, "").replace("'", "'\\''")
        lines.append(f"{name}='{value}'\n")
    text = "".join(lines)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def remove_env_file(path: Path, written: str) -> None:
    """Remove ``path`` if it still holds what this run wrote (another run may own it now)."""
    try:
        if path.read_text(encoding="utf-8") == written:
            path.unlink()
    except OSError:
        pass
