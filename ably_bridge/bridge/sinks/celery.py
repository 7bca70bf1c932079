"""The Celery sink: each event becomes one task, sent by name, with a deterministic id.

This module owns :class:`CelerySink`. It builds a private Celery app from the
broker URL (``amqp://``, ``amqps://``, ``pyamqp://``, ``redis://``,
``rediss://``) and calls ``send_task`` by **name** - the bridge never imports
worker code. The task receives one argument, the envelope dict (the
Integrations JSON shape). Per target: ``queue``, ``routing_key``, ``priority``,
``expires`` (seconds), extra message ``headers`` and, on RabbitMQ, the queue's
``queue_type`` (``classic`` or ``quorum``).

Delivery guarantees:

* the task id is :func:`ably_bridge.bridge.dedup.celery_task_id` (uuid5 of
  route, task name and event id), so a re-sent event carries the same id and
  the worker-side :class:`~workers.guard.WorkerGuard` runs it once;
* on a Redis broker a task id is pushed once: a mark set in the same Lua step
  as the ``LPUSH`` (:mod:`.celery_redis`, kept ``delivery.dedup_ttl`` seconds)
  makes a re-sent event - read again after a crash, or in a batch retried after
  a broken pipeline - a no-op, reported as delivered;
* on AMQP, publisher confirms are on, so ``deliver`` returns only after the
  broker accepted each message;
* kombu's own publish retry is limited to one quick reconnect, so a broker
  outage *raises* (and the batch comes back as ``RETRY``) instead of blocking
  or queueing silently in memory.

Throughput: a ``deliver`` batch is sent as one unit. On Redis (push-once) the
batch's task messages are written from per-target templates of kombu's own JSON
and pushed by one script call (:mod:`.celery_redis_wire`), else the publishes go
through kombu's ``Producer.batch()`` (one pipeline, one round trip); on AMQP
with confirms the messages of a batch are published without waiting (only
the first publish on a channel whose tags are not known yet waits for its
ack) - their frames written to the socket 64 KiB at a time rather than one
``sendall`` each, their header tables encoded by :class:`~.amqp_wire.PropertyEncoder`
(py-amqp's bytes, memoised) - and the batch then waits once for the broker's
(cumulative) acks; a message counts as delivered only when its own delivery
tag was acked (that path is :class:`~.celery_confirms.ConfirmedPublishing`).

Messages: Celery's ``send_task`` builds the message of a target once (a
:class:`~.celery_message.TaskTemplate`, captured from what it hands to the producer); per event
only what varies is filled in - ``id``/``root_id``/``correlation_id`` (the task
id), ``argsrepr`` (a plain ``repr`` cut at Celery's limit instead of Celery's
slow ``saferepr``), ``expires`` (from the current time, as Celery computes it)
and the JSON body ``[[envelope], {}, {callbacks..}]`` (the envelope's own
JSON) - and the result is published through kombu's ``Producer.publish``, so
the worker gets the task message ``send_task`` would have sent. Anything the
template cannot reproduce - a non-JSON serializer, compression, sent events,
``before/after_task_publish`` signal receivers, an envelope that is not
JSON-safe - goes through ``send_task`` itself.

The wire-level speed-ups above (pipelined confirms, buffered frames, the
property encoder, the message templates) reach into py-amqp, kombu and Celery
internals: each is a shortcut of :mod:`ably_bridge.shortcuts`, checked when the
sink is built, and when it is off the public path runs (every publish waits
for its confirm; py-amqp writes and encodes; ``send_task`` builds every message).

Retryable errors are the transport's declared connection and channel errors
(kombu style), socket errors, timeouts and publish NACKs; an encoding error
for one event is permanent and that event is dead-lettered.
"""

from __future__ import annotations

import logging
import socket
import weakref
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.exceptions import EncodeError, OperationalError

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.amqp_frames import TaskFrames
from ably_bridge.bridge.sinks.amqp_wire import (
    ENCODABLE,
    Confirms,
    PropertyEncoder,
)
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions
from ably_bridge.bridge.sinks.celery_confirms import ConfirmedPublishing
from ably_bridge.bridge.sinks.celery_message import SenderAMQP, TaskTemplate, publish_signals
from ably_bridge.bridge.sinks.celery_redis import (
    split_sentinel_master,
    supported,
    transport_conf,
)
from ably_bridge.bridge.sinks.celery_redis_wire import RedisTaskWriter
from ably_bridge.envelope import Envelope
from ably_bridge.shortcuts import enabled as shortcut_enabled

__all__ = ["CelerySink", "make_sender_app"]

logger = logging.getLogger(__name__)

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_REDIS_SCHEMES = ("redis", "rediss", "sentinel")
_TEMPLATE_CACHE_LIMIT = 4096


def make_sender_app(
    url: str, *, timeout: float = 5.0, push_once: tuple[str, float] | None = None
) -> Celery:
    """A Celery app that only sends tasks: JSON, no result backend, fail-fast broker.

    ``push_once`` = (key prefix, mark ttl in seconds): on a Redis broker, a task id
    already pushed is not pushed again (:mod:`.celery_redis`). Without it (the
    dead-letter replay, which must re-send a task id) every send is pushed.
    """
    scheme = url.split("://", 1)[0].lower()
    transport_options: dict[str, Any] = {}
    if scheme == "sentinel":  # kombu's Sentinel transport: the primary's name
        url, master = split_sentinel_master(url)
        if master is None:
            raise ValueError("a sentinel:// Celery broker URL needs ?master_name=NAME")
        transport_options["master_name"] = master
    app = Celery("ably-bridge-sender", broker=url, set_as_current=False, amqp=SenderAMQP)
    extra: dict[str, Any] = {}
    if push_once is not None and scheme in _REDIS_SCHEMES:
        if supported():
            extra = transport_conf(url, *push_once)
        else:
            logger.warning(
                "celery sink: this kombu's Redis transport lacks what push-once needs; "
                "a re-sent task is queued again (use WorkerGuard in the task)"
            )
    if extra:
        transport_options.update(extra.pop("broker_transport_options"))
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
        **extra,
    )
    return app


class CelerySink(ConfirmedPublishing):
    """Sends envelopes as Celery tasks by name."""

    def __init__(
        self, url: str, options: SinkOptions | None = None, *, app: Celery | None = None
    ) -> None:
        self.options = options or SinkOptions()
        self._where = redact_url(url)
        self._app = app or make_sender_app(
            url,
            timeout=self.options.socket_timeout,
            push_once=(self.options.key_prefix, self.options.dedup_ttl),
        )
        self._retry_policy = {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }
        self._errors: tuple[type[BaseException], ...] | None = None
        self._channels: weakref.WeakKeyDictionary[Any, Confirms] = weakref.WeakKeyDictionary()
        # id(target) -> (target, its template or None: send_task each time)
        self._templates: dict[int, tuple[CeleryTarget, TaskTemplate | None]] = {}
        self._encoder = (
            PropertyEncoder() if ENCODABLE and shortcut_enabled("amqp.property_encoder") else None
        )
        self._pipelined = shortcut_enabled("amqp.pipelined_confirms")
        self._buffered = shortcut_enabled("amqp.frame_writer")
        self._templated = shortcut_enabled("celery.task_template")
        redis = url.split("://", 1)[0].lower() in _REDIS_SCHEMES
        direct = redis and self._templated and shortcut_enabled("kombu.redis_message_template")
        self._direct = RedisTaskWriter() if direct else None  # (on RabbitMQ: amqp_frames)
        framed = self._templated and self._buffered and shortcut_enabled("amqp.task_frames")
        self._frames = TaskFrames(self._encoder) if self._encoder and framed else None

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
                direct = self._deliver_direct(batch, producer) if self._direct else None
                if direct is not None:
                    results = direct
                elif len(batch) > 1 and getattr(producer, "supports_batch_publish", False):
                    results = self._deliver_pipelined(batch, producer)
                else:
                    results = self._deliver_each(batch, producer)
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

    def _declare_for(self, batch: Sequence[Delivery], producer: Any, declared: set[str]) -> bool:
        """Declare the batch's queues before publishing; True if every delivery has a
        template (so the batch may be written in one go: nothing in it waits for a reply)."""
        if publish_signals():
            return False
        entities: dict[int, Any] = {}
        for d in batch:
            target = d.target
            if not isinstance(target, CeleryTarget):
                continue
            template = self._template(target)
            if template is None:
                return False
            for entity in template.declare:
                entities.setdefault(id(entity), entity)
        for entity in entities.values():
            producer.maybe_declare(entity)
            name = getattr(entity, "name", None)
            if name:
                declared.add(name)
        return True

    def _deliver_direct(self, batch: Sequence[Delivery], producer: Any) -> list[Result] | None:
        """Redis with push-once: the batch's task messages built from their templates and
        pushed in one script call (:mod:`.celery_redis_wire`); None: kombu publishes."""
        assert self._direct is not None
        if not self._declare_for(batch, producer, set()):
            return None
        tasks = []
        for d in batch:
            target, env = d.target, d.envelope
            if not isinstance(target, CeleryTarget):
                return None
            template = self._template(target)
            if template is None:
                return None
            tasks.append((template, env, celery_task_id(env.rule_id, target.task, env.dedup_key)))
        try:
            if not self._direct.push(self._app, producer, tasks):
                return None
        except Exception as exc:  # the call failed: nothing of it is known to be in
            outcome = self._batch_failed(len(batch), exc)
            return [Result(outcome, task_id, exc) for _, _, task_id in tasks]
        return [Result(Outcome.DELIVERED, task_id) for _, _, task_id in tasks]

    def _batch_failed(self, size: int, exc: Exception) -> Outcome:
        """Log a whole batch's failure; the outcome of each of its events not known to be in."""
        retry = self.retryable(exc)
        logger.warning(
            "celery sink %s: batch of %d failed (%s): %s",
            self._where,
            size,
            "will retry" if retry else "permanent",
            type(exc).__name__,
        )
        return Outcome.RETRY if retry else Outcome.REJECTED

    def _deliver_pipelined(self, batch: Sequence[Delivery], producer: Any) -> list[Result]:
        """Redis: every publish of the batch in one pipeline (kombu ``Producer.batch``)."""
        results: list[Result] = []
        try:
            declared: set[str] = set()
            self._declare_for(batch, producer, declared)
            with producer.batch(max_size=4 * len(batch) + 16):
                for d in batch:
                    result = self._send(d, producer, retry=False, declared=declared)
                    results.append(result)
                    if result.outcome is Outcome.RETRY:
                        break
        except Exception as exc:  # the pipeline failed: nothing of it is known to be in
            outcome = self._batch_failed(len(batch), exc)
            return [
                Result(outcome, r.detail, exc) if r.outcome is Outcome.DELIVERED else r
                for r in results
            ]
        return results

    def _task_options(self, target: CeleryTarget) -> dict[str, Any]:
        """The ``send_task`` options of ``target``."""
        options: dict[str, Any] = {}
        if target.queue_type is not None:
            options["queue"] = self._typed_queue(target)
        elif target.queue is not None:
            options["queue"] = target.queue
        if target.routing_key is not None:
            options["routing_key"] = target.routing_key
        if target.priority is not None:
            options["priority"] = target.priority
        if target.expires is not None:
            options["expires"] = target.expires
        if target.headers:
            options["headers"] = dict(target.headers)
        return options

    def _typed_queue(self, target: CeleryTarget) -> Any:
        """The target's queue as Celery would create it, declared with ``x-queue-type``.

        A quorum queue (RabbitMQ) replicates and fsyncs through a write-ahead log:
        persistent, confirmed publishes cost the broker about half the CPU of a
        classic queue and are confirmed far sooner (docs/benchmarks.md). Every
        process that declares the queue, the workers consuming it included, must
        declare the same type (``ABLY_WORKER_QUEUE_TYPE``), or RabbitMQ refuses
        the second declaration (PRECONDITION_FAILED).
        """
        name = target.queue or self._app.conf.task_default_queue
        # A quorum queue's exchange is a topic exchange: Celery's native delayed delivery
        # (a worker's countdown retry from a quorum queue) routes through one.
        kind = "topic" if target.queue_type == "quorum" else "direct"
        arguments = {"x-queue-type": target.queue_type}
        exchange = Exchange(name, type=kind)  # type: ignore[no-untyped-call]
        return Queue(name, exchange, name, queue_arguments=arguments)  # type: ignore[no-untyped-call]

    def _template(self, target: CeleryTarget) -> TaskTemplate | None:
        """The message template of ``target`` (built on first use), or None: send_task."""
        if not self._templated:
            return None
        entry = self._templates.get(id(target))
        if entry is not None and entry[0] is target:
            return entry[1]
        send = {
            "retry": True,
            "retry_policy": self._retry_policy,
            "confirm_timeout": self.options.socket_timeout,
            "add_to_parent": False,
            "ignore_result": True,
        }
        try:
            template = TaskTemplate.capture(self._app, target, self._task_options(target), send)
        except Exception as exc:  # send_task itself will report it, per event
            logger.debug("celery sink %s: no template for %s: %r", self._where, target.task, exc)
            template = None
        if template is None:
            logger.info("celery sink %s: task %s is sent by send_task", self._where, target.task)
        if len(self._templates) >= _TEMPLATE_CACHE_LIMIT:
            self._templates.clear()
        self._templates[id(target)] = (target, template)
        return template

    def _send(
        self, d: Delivery, producer: Any, *, retry: bool = True, declared: set[str] | None = None
    ) -> Result:
        """Send one task. With ``declared`` (queues declared on this producer during the
        batch), a target queue is declared once per batch instead of once per task."""
        target = d.target
        if not isinstance(target, CeleryTarget):
            return Result(Outcome.REJECTED, error=ValueError("not a celery target"))
        env = d.envelope
        task_id = celery_task_id(env.rule_id, target.task, env.dedup_key)
        template = None if publish_signals() else self._template(target)
        try:
            if template is not None:
                try:
                    body, headers = template.publish_args(self._app, target, env, task_id)
                except (TypeError, ValueError):  # not JSON-safe as it is: send_task decides
                    template = None
            if template is not None:
                declare = None
                if declared is None:
                    declare = list(template.declare)
                else:
                    for entity in template.declare:
                        if entity.name not in declared:
                            producer.maybe_declare(entity)
                            declared.add(entity.name)
                producer.publish(
                    body,
                    headers=headers,
                    correlation_id=task_id,
                    reply_to=self._app.thread_oid,
                    retry=retry,
                    declare=declare,
                    **template.publish,
                )
            else:
                self._send_task(target, env, task_id, producer, retry, declared)
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

    def _send_task(
        self,
        target: CeleryTarget,
        env: Envelope,
        task_id: str,
        producer: Any,
        retry: bool,
        declared: set[str] | None,
    ) -> None:
        """The general path: Celery's ``send_task`` builds and publishes the message."""
        options = self._task_options(target)
        queue = options.get("queue")
        if declared is not None and queue is not None:
            entity = queue if isinstance(queue, Queue) else self._app.amqp.queues[queue]
            if entity.name not in declared:
                producer.maybe_declare(entity)
                declared.add(entity.name)
            options["declare"] = []
        self._app.send_task(
            target.task,
            args=(env.to_dict(),),
            task_id=task_id,
            producer=producer,
            retry=retry,
            retry_policy=self._retry_policy,
            confirm_timeout=self.options.socket_timeout,
            add_to_parent=False,
            ignore_result=True,
            **options,
        )

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, EncodeError | TypeError | ValueError):
            return False
        if isinstance(exc, OperationalError | socket.timeout | OSError | TimeoutError):
            return True
        if type(exc).__name__ in (
            "MessageNacked",
            "RecoverableConnectionError",
            "BatchPublishError",
        ):
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
