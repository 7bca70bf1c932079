"""The Celery sink: each event becomes one task, sent by name, with a deterministic id.

This module owns :class:`CelerySink`. It builds a private Celery app from the
broker URL (``amqp://``, ``amqps://``, ``pyamqp://``, ``redis://``,
``rediss://``) and calls ``send_task`` by **name** - the bridge never imports
worker code. The task receives one argument, the envelope dict (the
Integrations JSON shape). Per target: ``queue``, ``routing_key``, ``priority``,
``expires`` (seconds) and extra message ``headers``.

Delivery guarantees:

* the task id is :func:`ably_bridge.bridge.dedup.celery_task_id` (uuid5 of
  route, task name and event id), so a re-sent event carries the same id and
  the worker-side :class:`~ably_bridge.bridge.dedup.WorkerGuard` runs it once;
* on AMQP, publisher confirms are on, so ``deliver`` returns only after the
  broker accepted each message;
* kombu's own publish retry is limited to one quick reconnect, so a broker
  outage *raises* (and the batch comes back as ``RETRY``) instead of blocking
  or queueing silently in memory.

Retryable errors are the transport's declared connection and channel errors
(kombu style), socket errors, timeouts and publish NACKs; an encoding error
for one event is permanent and that event is dead-lettered.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import EncodeError, OperationalError

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions

__all__ = ["CelerySink", "make_sender_app"]

logger = logging.getLogger(__name__)

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def make_sender_app(url: str, *, timeout: float = 5.0) -> Celery:
    """A Celery app that only sends tasks: JSON, no result backend, fail-fast broker."""
    scheme = url.split("://", 1)[0].lower()
    app = Celery("ably-bridge-sender", broker=url, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if scheme in _AMQP_SCHEMES:
        transport_options["confirm_publish"] = True
        transport_options["connect_timeout"] = timeout
    else:
        transport_options["socket_timeout"] = timeout
        transport_options["socket_connect_timeout"] = timeout
        transport_options["retry_on_timeout"] = False
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        broker_transport_options=transport_options,
        broker_pool_limit=4,
        task_create_missing_queues=True,
    )
    return app


class CelerySink:
    """Sends envelopes as Celery tasks by name."""

    def __init__(
        self, url: str, options: SinkOptions | None = None, *, app: Celery | None = None
    ) -> None:
        self.options = options or SinkOptions()
        self._where = redact_url(url)
        self._app = app or make_sender_app(url, timeout=self.options.socket_timeout)
        self._retry_policy = {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }
        self._errors: tuple[type[BaseException], ...] | None = None

    def __repr__(self) -> str:
        return f"CelerySink({self._where!r})"

    @property
    def app(self) -> Celery:
        return self._app

    # -- Sink ---------------------------------------------------------------------
    def deliver(self, batch: Sequence[Delivery]) -> list[Result]:
        results: list[Result] = []
        if not batch:
            return results
        try:
            with self._app.producer_or_acquire() as producer:
                for d in batch:
                    result = self._send(d, producer)
                    results.append(result)
                    if result.outcome is Outcome.RETRY:
                        break  # the broker is down: the rest would fail the same way
        except Exception as exc:  # acquiring a connection failed: a sink-level problem
            # Even a "permanent" error here (bad credentials) is about the sink, not the
            # events, so they are kept for retry rather than dead-lettered.
            level = logging.WARNING if self.retryable(exc) else logging.ERROR
            logger.log(level, "celery sink %s unavailable: %s", self._where, type(exc).__name__)
            error: BaseException = exc
        else:
            error = results[-1].error if results and results[-1].error else OperationalError()
        while len(results) < len(batch):
            results.append(Result(Outcome.RETRY, error=error))
        return results

    def _send(self, d: Delivery, producer: Any) -> Result:
        target = d.target
        if not isinstance(target, CeleryTarget):
            return Result(Outcome.REJECTED, error=ValueError("not a celery target"))
        env = d.envelope
        task_id = celery_task_id(env.rule_id, target.task, env.dedup_key)
        options: dict[str, Any] = {}
        if target.queue is not None:
            options["queue"] = target.queue
        if target.routing_key is not None:
            options["routing_key"] = target.routing_key
        if target.priority is not None:
            options["priority"] = target.priority
        if target.expires is not None:
            options["expires"] = target.expires
        if target.headers:
            options["headers"] = dict(target.headers)
        try:
            self._app.send_task(
                target.task,
                args=(env.to_dict(),),
                task_id=task_id,
                producer=producer,
                retry=True,
                retry_policy=self._retry_policy,
                confirm_timeout=self.options.socket_timeout,
                add_to_parent=False,
                ignore_result=True,
                **options,
            )
        except Exception as exc:
            if self.retryable(exc):
                logger.warning(
                    "celery sink %s: send of %s failed, will retry: %s",
                    self._where,
                    target.task,
                    type(exc).__name__,
                )
                return Result(Outcome.RETRY, task_id, exc)
            logger.error(
                "celery sink %s: task %s rejected event %s: %s",
                self._where,
                target.task,
                env.event_id,
                exc,
            )
            return Result(Outcome.REJECTED, task_id, exc)
        return Result(Outcome.DELIVERED, task_id)

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, EncodeError | TypeError | ValueError):
            return False
        if isinstance(exc, OperationalError | socket.timeout | OSError | TimeoutError):
            return True
        if type(exc).__name__ in ("MessageNacked", "RecoverableConnectionError"):
            return True
        return isinstance(exc, self._transport_errors())

    def _transport_errors(self) -> tuple[type[BaseException], ...]:
        if self._errors is None:
            try:
                conn = self._app.connection_for_write()
                self._errors = tuple(conn.connection_errors) + tuple(conn.channel_errors)
                conn.release()
            except Exception:  # introspection only; fall back to the generic set
                self._errors = (ConnectionError,)
        return self._errors

    def healthy(self) -> bool:
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.options.socket_timeout)
            return True
        except Exception:  # a probe never raises
            return False

    def close(self) -> None:
        try:
            self._app.close()
        except Exception as exc:  # closing pools must not fail shutdown
            logger.debug("celery sink %s close: %s", self._where, type(exc).__name__)
