"""The Celery sink's AMQP path: a batch published under publisher confirms.

This module owns :class:`ConfirmedPublishing`, the part of
:class:`~.celery.CelerySink` that sends a batch to RabbitMQ: the first publish
on a channel whose delivery tags are not known yet waits for its own ack; the
rest of the batch is published without waiting (frames buffered by
:func:`~.amqp_wire.buffered_frames` when every message has a template, and
built from the template by :mod:`.amqp_frames` with the ``amqp.task_frames``
shortcut) and the
batch then waits once for the broker's cumulative acks. A message counts as
delivered only when its own delivery tag was acked; from the first one nacked
or not settled in time on, the results become ``RETRY``. The confirm
bookkeeping (:class:`~.amqp_wire.Confirms`) is kept per channel. Without the
``amqp.pipelined_confirms`` shortcut (:mod:`ably_bridge.shortcuts`) every
publish waits for its own confirm.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import EncodeError, OperationalError

from ably_bridge.bridge.config import CeleryTarget
from ably_bridge.bridge.dedup import celery_task_id
from ably_bridge.bridge.sinks.amqp_frames import TaskFrames
from ably_bridge.bridge.sinks.amqp_wire import Confirms, PropertyEncoder, buffered_frames
from ably_bridge.bridge.sinks.base import Delivery, Outcome, Result, SinkOptions
from ably_bridge.bridge.sinks.celery_message import TaskTemplate

__all__ = ["ConfirmedPublishing"]

logger = logging.getLogger("ably_bridge.bridge.sinks.celery")


class ConfirmedPublishing:
    """Part of :class:`~.celery.CelerySink` (see the module docstring)."""

    options: SinkOptions
    _where: str
    _channels: weakref.WeakKeyDictionary[Any, Confirms]
    _encoder: PropertyEncoder | None
    _pipelined: bool
    _buffered: bool
    _frames: TaskFrames | None
    _app: Celery

    if TYPE_CHECKING:  # (defined by CelerySink)

        def _send(
            self,
            d: Delivery,
            producer: Any,
            *,
            retry: bool = True,
            declared: set[str] | None = None,
        ) -> Result: ...

        def _declare_for(
            self, batch: Sequence[Delivery], producer: Any, declared: set[str]
        ) -> bool: ...

        def _template(self, target: CeleryTarget) -> TaskTemplate | None: ...

        def retryable(self, exc: BaseException) -> bool: ...

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
        rest = batch[start:]
        declared: set[str] = set()
        buffered = self._declare_for(rest, producer, declared) and self._buffered
        # Every earlier publish on this channel is settled, so the next ones get
        # the tags after ``base``.
        base = confirms.settled
        tags: list[int] = []
        confirms.synced = False  # until this batch is settled
        error: BaseException | None = None
        with contextlib.ExitStack() as stack:
            write = None
            if buffered:
                buffer = stack.enter_context(buffered_frames(channel, self._encoder))
                if self._frames is not None:
                    frames_of = self._frames.batch(self._app, channel, producer)
                    write = functools.partial(self._write_frames, frames_of, buffer, channel)
            else:
                channel.basic_publish = channel._basic_publish  # publish without waiting
                stack.callback(setattr, channel, "basic_publish", channel.basic_publish_confirm)
            for d in rest:
                written = write(d) if write is not None else None
                if written is not None:
                    result = written
                else:
                    result = self._send(d, producer, retry=False, declared=declared)
                results.append(result)
                if result.outcome is Outcome.DELIVERED:
                    tags.append(base + len(tags) + 1)  # provisional: settled below
                elif result.outcome is not Outcome.REJECTED or not isinstance(
                    result.error, EncodeError | TypeError | ValueError
                ):
                    break  # (an event that could not be encoded never reached the broker)
            try:
                stack.close()  # writes the frames still buffered
            except Exception as exc:  # the connection broke: the unconfirmed ones retry
                error = exc
        if error is None and tags:
            error = self._await_confirms(channel, confirms, tags[-1])
        if self._settle_tags(results, start, tags, confirms, error):
            confirms.synced = not (results and results[-1].outcome is Outcome.RETRY)
        return results

    def _write_frames(
        self, frames_of: Callable[..., bytes | None], buffer: Any, channel: Any, d: Delivery
    ) -> Result | None:
        """Publish ``d`` by writing frames built from its template (:mod:`.amqp_frames`)
        into the batch's buffer; None when kombu must publish it."""
        target = d.target
        if not isinstance(target, CeleryTarget):
            return None
        template = self._template(target)
        if template is None:
            return None
        env = d.envelope
        task_id = celery_task_id(env.rule_id, target.task, env.dedup_key)
        data = frames_of(template, env, task_id)
        if data is None:
            return None
        try:
            buffer.write(data)
            channel.connection.bytes_sent += 1  # (py-amqp's count of frame writes: heartbeats)
        except Exception as exc:  # the connection broke: this one and the rest retry
            outcome = Outcome.RETRY if self.retryable(exc) else Outcome.REJECTED
            return Result(outcome, task_id, exc)
        return Result(Outcome.DELIVERED, task_id)

    def _confirms_of(self, channel: Any) -> Confirms | None:
        """The confirm bookkeeping of an AMQP channel in confirm mode, else None."""
        connection = getattr(channel, "connection", None)
        if not self._pipelined:  # (public path: each publish waits for its own confirm)
            return None
        if not getattr(connection, "confirm_publish", False) or not hasattr(
            channel, "basic_publish_confirm"
        ):
            return None
        confirms = self._channels.get(channel)
        if confirms is None:
            confirms = Confirms()
            channel.events["basic_ack"].add(confirms.ack)
            channel.events["basic_nack"].add(confirms.nack)
            self._channels[channel] = confirms
            # Registered after this channel's earlier publishes: their tags are unknown
            # until the next waited-for publish settles; use one-by-one sends this time.
            return None
        return confirms

    def _synced_confirms(self, producer: Any) -> Confirms | None:
        """The bookkeeping of the producer's channel if all its publishes are settled."""
        if not self._channels:
            return None
        try:
            # A pooled producer's channel is a promise until used; this resolves it to
            # the connection's default channel (what its next publish would use).
            channel = producer.channel
        except Exception:  # the connection is down: the waited first publish reconnects
            return None
        try:
            confirms = self._channels.get(channel)
        except TypeError:  # not a channel (not weak-referenceable)
            return None
        if confirms is None or not confirms.synced:
            return None
        return confirms

    def _await_confirms(self, channel: Any, confirms: Confirms, last: int) -> BaseException | None:
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
        confirms: Confirms,
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
