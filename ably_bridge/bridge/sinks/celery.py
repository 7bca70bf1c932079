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

Throughput: a ``deliver`` batch is sent as one unit. On Redis the publishes go
through kombu's ``Producer.batch()`` (one pipeline, one round trip); on AMQP
with confirms every message after the first is published without waiting and
the batch then waits once for the broker's (cumulative) acks - a message
counts as delivered only when its own delivery tag was acked. The task
header ``argsrepr`` is a plain ``repr`` cut at Celery's limit instead of
Celery's (slow) ``saferepr``.

Retryable errors are the transport's declared connection and channel errors
(kombu style), socket errors, timeouts and publish NACKs; an encoding error
for one event is permanent and that event is dead-lettered.
"""

from __future__ import annotations

import logging
import socket
import time
import weakref
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu.exceptions import EncodeError, OperationalError

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions

__all__ = ["CelerySink", "make_sender_app"]

logger = logging.getLogger(__name__)

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def _short_repr(value: Any, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SenderAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper with a cheap ``argsrepr``/``kwargsrepr`` (plain ``repr``, cut)."""

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:  # fmt: skip
        if options.get("argsrepr") is None:
            options["argsrepr"] = _short_repr(tuple(args or ()), self.argsrepr_maxsize)
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = _short_repr(kwargs or {}, self.kwargsrepr_maxsize)
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


class _Confirms:
    """Publisher-confirm bookkeeping of one AMQP channel: the highest tag settled, nacks."""

    __slots__ = ("nacked", "settled", "synced")

    def __init__(self) -> None:
        self.settled = 0  # every tag up to this one was acked or nacked
        self.nacked: set[int] = set()
        # True when every publish on the channel is settled and counted in ``settled``
        # (the next publish gets tag settled + 1): a batch need not wait for its first.
        self.synced = False

    def ack(self, tag: int, multiple: bool) -> None:
        self.settled = max(self.settled, tag)

    def nack(self, tag: int, multiple: bool) -> None:
        first = self.settled + 1 if multiple else tag
        self.nacked.update(range(first, tag + 1))
        self.settled = max(self.settled, tag)


def make_sender_app(url: str, *, timeout: float = 5.0) -> Celery:
    """A Celery app that only sends tasks: JSON, no result backend, fail-fast broker."""
    scheme = url.split("://", 1)[0].lower()
    app = Celery("ably-bridge-sender", broker=url, set_as_current=False, amqp=SenderAMQP)
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
        self._channels: weakref.WeakKeyDictionary[Any, _Confirms] = weakref.WeakKeyDictionary()

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
                if len(batch) > 1 and getattr(producer, "supports_batch_publish", False):
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

    def _deliver_each(self, batch: Sequence[Delivery], producer: Any) -> list[Result]:
        """One publish per delivery; on AMQP with confirms, one wait for the batch's acks."""
        results: list[Result] = []
        confirms = self._synced_confirms(producer)
        start = 0
        if confirms is None:
            # A channel not known to be settled: the first send waits for its own ack
            # (and may reconnect once, kombu retry); after it everything is settled.
            first = self._send(batch[0], producer)
            results.append(first)
            if first.outcome is Outcome.RETRY:
                return results
            confirms = self._confirms_of(producer.channel)
            if confirms is None or len(batch) == 1:
                for d in batch[1:]:
                    result = self._send(d, producer)
                    results.append(result)
                    if result.outcome is Outcome.RETRY:
                        break  # the broker is down: the rest would fail the same way
                if confirms is not None:  # each publish waited for its ack: all counted
                    confirms.synced = all(r.outcome is Outcome.DELIVERED for r in results)
                return results
            start = 1
        channel = producer.channel
        # Every earlier publish on this channel is settled, so the next ones get
        # the tags after ``base``.
        base = confirms.settled
        tags: list[int] = []
        declared: set[str] = set()
        confirms.synced = False  # until this batch is settled
        channel.basic_publish = channel._basic_publish  # publish without waiting
        try:
            for d in batch[start:]:
                result = self._send(d, producer, retry=False, declared=declared)
                results.append(result)
                if result.outcome is Outcome.DELIVERED:
                    tags.append(base + len(tags) + 1)  # provisional: settled below
                elif result.outcome is not Outcome.REJECTED or not isinstance(
                    result.error, EncodeError | TypeError | ValueError
                ):
                    break  # (an event that could not be encoded never reached the broker)
        finally:
            channel.basic_publish = channel.basic_publish_confirm
        error = self._await_confirms(channel, confirms, tags[-1]) if tags else None
        if self._settle_tags(results, start, tags, confirms, error):
            confirms.synced = not (results and results[-1].outcome is Outcome.RETRY)
        return results

    def _deliver_pipelined(self, batch: Sequence[Delivery], producer: Any) -> list[Result]:
        """Redis: every publish of the batch in one pipeline (kombu ``Producer.batch``)."""
        results: list[Result] = []
        try:
            declared: set[str] = set()
            with producer.batch(max_size=4 * len(batch) + 16):
                for d in batch:
                    result = self._send(d, producer, retry=False, declared=declared)
                    results.append(result)
                    if result.outcome is Outcome.RETRY:
                        break
        except Exception as exc:  # the pipeline failed: nothing of it is known to be in
            retry = self.retryable(exc)
            logger.warning(
                "celery sink %s: batch of %d failed (%s): %s",
                self._where,
                len(batch),
                "will retry" if retry else "permanent",
                type(exc).__name__,
            )
            outcome = Outcome.RETRY if retry else Outcome.REJECTED
            return [
                Result(outcome, r.detail, exc) if r.outcome is Outcome.DELIVERED else r
                for r in results
            ]
        return results

    def _confirms_of(self, channel: Any) -> _Confirms | None:
        """The confirm bookkeeping of an AMQP channel in confirm mode, else None."""
        connection = getattr(channel, "connection", None)
        if not getattr(connection, "confirm_publish", False) or not hasattr(
            channel, "basic_publish_confirm"
        ):
            return None
        confirms = self._channels.get(channel)
        if confirms is None:
            confirms = _Confirms()
            channel.events["basic_ack"].add(confirms.ack)
            channel.events["basic_nack"].add(confirms.nack)
            self._channels[channel] = confirms
            # Registered after this channel's earlier publishes: their tags are unknown
            # until the next waited-for publish settles; use one-by-one sends this time.
            return None
        return confirms

    def _synced_confirms(self, producer: Any) -> _Confirms | None:
        """The bookkeeping of the producer's channel if all its publishes are settled."""
        channel = getattr(producer, "_channel", None)
        try:
            confirms = self._channels.get(channel) if channel is not None else None
        except TypeError:  # not a channel yet (a promise): not weak-referenceable
            return None
        if confirms is None or not confirms.synced:
            return None
        return confirms

    def _await_confirms(self, channel: Any, confirms: _Confirms, last: int) -> BaseException | None:
        deadline = time.monotonic() + self.options.socket_timeout
        try:
            while confirms.settled < last:
                left = deadline - time.monotonic()
                if left <= 0:
                    return TimeoutError("publisher confirms timed out")
                channel.connection.drain_events(timeout=left)
        except Exception as exc:  # connection lost or timed out: unconfirmed ones retry
            return exc
        return None

    def _settle_tags(
        self,
        results: list[Result],
        start: int,
        tags: list[int],
        confirms: _Confirms,
        error: BaseException | None,
    ) -> bool:
        """Turn the provisional results from ``start`` on into what the broker confirmed.

        From the first publish not acked (nacked, or not settled in time) on,
        the results become RETRY. True when every publish was settled (acked or
        nacked), so the channel's tag count is still known.
        """
        k = 0
        for i in range(start, len(results)):
            r = results[i]
            if r.outcome is not Outcome.DELIVERED:
                continue
            tag = tags[k]
            k += 1
            if tag > confirms.settled or tag in confirms.nacked:
                exc = error or OperationalError("message nacked by the broker")
                logger.warning(
                    "celery sink %s: %d publish(es) not confirmed, will retry: %s",
                    self._where,
                    len(results) - i,
                    type(exc).__name__,
                )
                del results[i:]
                results.append(Result(Outcome.RETRY, r.detail, exc))
                break
        confirms.nacked.difference_update(tags)
        return not tags or confirms.settled >= tags[-1]

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
            if declared is not None and target.queue is not None:
                if target.queue not in declared:
                    producer.maybe_declare(self._app.amqp.queues[target.queue])
                    declared.add(target.queue)
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
