"""Celery-side helpers for ably-bridge: the app factory, the ``ably.*`` tasks and consumers.

* :mod:`workers.app` - :func:`create_app` (configured from the environment; every
  variable is documented there), :func:`configure_app`, :func:`default_app`;
* :mod:`workers.tasks` - the tasks and :func:`register_tasks` for any Celery app;
* :mod:`workers.producers` - typed helpers that enqueue the tasks;
* :mod:`workers.consumers` - envelope decoding and the de-duplicating
  :func:`envelope_task` decorator;
* :mod:`workers.streams` - :class:`StreamConsumer` and ``python -m workers.streams``;
* :mod:`workers.unknown_tasks` - messages for unregistered task names go to the
  bridge's dead-letter stream instead of being discarded;
* :mod:`workers.retry`, :mod:`workers.settings`, :mod:`workers.client`,
  :mod:`workers.errors` - the retry policy, settings, per-process REST client, task error.

``celery -A workers worker`` finds the app as ``workers.celery``, built from the
environment on first access.
"""

from __future__ import annotations

from typing import Any

from workers import producers
from workers.app import configure_app, create_app, default_app, set_default_app
from workers.consumers import BridgedEvent, decode_envelope, envelope_from_fields, envelope_task
from workers.errors import AblyTaskError
from workers.retry import RetryPolicy
from workers.settings import WorkerSettings
from workers.tasks import TASK_NAMES, register_tasks
from workers.unknown_tasks import dead_letter_unknown_tasks

__all__ = [
    "TASK_NAMES",
    "AblyTaskError",
    "BridgedEvent",
    "RetryPolicy",
    "StreamConfig",
    "StreamConsumer",
    "StreamEntry",
    "WorkerSettings",
    "configure_app",
    "create_app",
    "dead_letter_unknown_tasks",
    "decode_envelope",
    "default_app",
    "envelope_from_fields",
    "envelope_task",
    "producers",
    "register_tasks",
    "set_default_app",
]


# Loaded on first use, so that ``python -m workers.streams`` runs the module once
# (importing it here first makes runpy warn that it is already in sys.modules).
_STREAM_NAMES = frozenset({"StreamConfig", "StreamConsumer", "StreamEntry"})


def __getattr__(name: str) -> Any:
    # ``celery -A workers`` looks up ``workers.celery`` (``workers.app`` is the module).
    if name == "celery":
        return default_app()
    if name in _STREAM_NAMES:
        from workers import streams

        return getattr(streams, name)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
