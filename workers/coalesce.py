"""Producer-side coalescing: many publishes, few tasks, each message keeping its own id.

This module owns :class:`Coalescer`. A producer that publishes at volume (a web
app notifying many users) calls :meth:`Coalescer.publish` as it would call
:func:`workers.producers.publish`; the message ids are fixed right there, at
enqueue time (RSL1k1, ``<base>:<index>``, a new base per call), and returned
at once on a :class:`CoalescedReceipt`. Publishes made within ``window``
seconds of the first one buffered are sent as one task:

* all on one channel: one ``ably.publish`` with every message (one multi-message
  REST publish, RSL1c);
* on several channels: one ``ably.publish_batch`` with a spec per channel (one
  batch publish request, RSC22).

Each message is checked as the worker would check it (types, encoding, data
that Ably can carry) before it joins a buffer, so a bad message is refused to its
caller (:class:`~ably_bridge.errors.AblyException`, 400-class) instead of failing
the batch it would share with other callers' messages.

A buffer is also sent when it reaches ``max_messages``, ``max_channels`` or about
``max_bytes`` of message JSON (Ably refuses a publish whose messages add up to
more than its maximum message size, 64 KiB by default; one message over the
limit goes alone and fails with Ably's 40009 as it would unbatched).

Because every message carries its id from the start, a coalesced task retried
or redelivered after a worker crash publishes the same ids and Ably keeps one
copy of each (within its 2-minute idempotency window). By default the tasks are
fire-and-forget (``ignore_result=True``: no result backend round trip); a
failure is retried by the worker and, when it gives up, logged there.

Call :meth:`Coalescer.close` (or use it as a context manager) to send what is
buffered before the process exits; :meth:`flush` sends it now.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ably_bridge.encoding.payload import encode_data
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.models import Message
from ably_bridge.rest.channels import idempotent_base
from workers import app as app_module
from workers import tasks as t
from workers.arguments import check_message as _message_argument
from workers.producers import MessageInput, wire_message

__all__ = ["CoalescedReceipt", "Coalescer"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 0.005
DEFAULT_MAX_MESSAGES = 200
DEFAULT_MAX_CHANNELS = 100
DEFAULT_MAX_BYTES = 60_000  # under Ably's default 64 KiB maximum message size


@dataclass
class CoalescedReceipt:
    """A buffered publish: its message ids now, the task that carries it once sent."""

    channel: str
    message_ids: list[str]
    _sent: threading.Event = field(default_factory=threading.Event, repr=False)
    task_id: str | None = None
    result: Any = field(default=None, repr=False)  # celery.result.AsyncResult once sent

    def wait_sent(self, timeout: float | None = None) -> bool:
        """Wait until the task carrying this publish is on the broker."""
        return self._sent.wait(timeout)

    def _mark_sent(self, result: Any) -> None:
        self.result = result
        self.task_id = str(result.id)
        self._sent.set()


def _size(message: Mapping[str, Any]) -> int:
    return len(json.dumps(message, separators=(",", ":"), default=str))


class Coalescer:
    """Buffers publishes for ``window`` seconds and sends them as one task.

    Thread-safe: any number of producer threads may publish through one
    coalescer; a background thread sends a buffer when its window ends.
    """

    def __init__(
        self,
        app: Any = None,
        *,
        window: float = DEFAULT_WINDOW,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ignore_result: bool = True,
        **send_options: Any,
    ) -> None:
        if not window > 0 or window > 60:
            raise ValueError("window must be between 0 and 60 seconds")
        if max_messages < 1 or max_channels < 1 or max_bytes < 1:
            raise ValueError("max_messages, max_channels and max_bytes must be positive")
        self.app = app
        self.window = float(window)
        self.max_messages = max_messages
        self.max_channels = max_channels
        self.max_bytes = max_bytes
        self.send_options = {**send_options, "ignore_result": ignore_result}
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()  # keeps the order of sends
        self._buffer: dict[str, list[dict[str, Any]]] = {}
        self._receipts: list[CoalescedReceipt] = []
        self._count = 0
        self._bytes = 0
        self._first_at: float | None = None
        self._closed = False
        self.tasks_sent = 0
        self.messages_sent = 0
        self._thread = threading.Thread(target=self._run, name="ably-coalescer", daemon=True)
        self._thread.start()

    # -- producer API ---------------------------------------------------------
    def publish(
        self,
        channel: str,
        name: str | None = None,
        data: Any = None,
        *,
        messages: Sequence[MessageInput] | None = None,
        client_id: str | None = None,
        message_id: str | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> CoalescedReceipt:
        """Buffer a publish of ``name``/``data`` (or ``messages``); ids are fixed now."""
        if not isinstance(channel, str) or not channel:
            raise ValueError("channel must be a non-empty string")
        if messages is None:
            single = Message(
                name,
                data,
                id=message_id,
                client_id=client_id,
                extras=dict(extras) if extras is not None else None,
            )
            batch = [wire_message(single)]
        else:
            for index, raw in enumerate(messages):
                if isinstance(raw, Mapping):
                    _message_argument(f"messages[{index}]", raw)
            batch = [wire_message(m) for m in messages]
        if not batch:
            raise ValueError("nothing to publish")
        for index, message in enumerate(batch):
            _check(message, index)
        batch = _fixed_ids(batch)
        receipt = CoalescedReceipt(channel, [str(m["id"]) for m in batch])
        size = sum(_size(m) for m in batch)
        ready: tuple[dict[str, list[dict[str, Any]]], list[CoalescedReceipt]] | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError("the coalescer is closed")
            if self._count and self._would_overflow(channel, len(batch), size):
                ready = self._take()
            self._buffer.setdefault(channel, []).extend(batch)
            self._receipts.append(receipt)
            self._count += len(batch)
            self._bytes += size
            if self._first_at is None:
                self._first_at = time.monotonic()
                self._lock.notify()
        if ready is not None:
            self._send(*ready)
        return receipt

    def flush(self) -> None:
        """Send what is buffered now (in this thread)."""
        with self._lock:
            ready = self._take()
        self._send(*ready)

    def close(self) -> None:
        """Send what is buffered and stop the background thread."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=30)
        self.flush()

    def __enter__(self) -> Coalescer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------
    def _would_overflow(self, channel: str, count: int, size: int) -> bool:
        channels = len(self._buffer) + (0 if channel in self._buffer else 1)
        return (
            self._count + count > self.max_messages
            or channels > self.max_channels
            or self._bytes + size > self.max_bytes
        )

    def _take(self) -> tuple[dict[str, list[dict[str, Any]]], list[CoalescedReceipt]]:
        taken = (self._buffer, self._receipts)
        self._buffer, self._receipts = {}, []
        self._count = self._bytes = 0
        self._first_at = None
        return taken

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    if self._first_at is None:
                        self._lock.wait()
                        continue
                    remaining = self._first_at + self.window - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                if self._closed:
                    return
                ready = self._take()
            try:
                self._send(*ready)
            except Exception:
                log.exception("coalescer: sending %d publishes failed", len(ready[1]))

    def _send(
        self, buffer: dict[str, list[dict[str, Any]]], receipts: list[CoalescedReceipt]
    ) -> None:
        if not buffer:
            return
        target = self.app if self.app is not None else app_module.default_app()
        with self._send_lock:
            if len(buffer) == 1:
                [(channel, messages)] = buffer.items()
                kwargs: dict[str, Any] = {"channel": channel, "messages": messages}
                result = target.send_task(t.TASK_PUBLISH, kwargs=kwargs, **self.send_options)
            else:
                specs = [{"channels": [c], "messages": m} for c, m in buffer.items()]
                result = target.send_task(
                    t.TASK_PUBLISH_BATCH, kwargs={"specs": specs}, **self.send_options
                )
            self.tasks_sent += 1
            self.messages_sent += sum(len(m) for m in buffer.values())
        for receipt in receipts:
            receipt._mark_sent(result)


def _check(message: dict[str, Any], index: int) -> None:
    """Refuse here what the worker would refuse: one bad message would fail its whole batch."""
    _message_argument(f"messages[{index}]", message)
    decoded = Message.from_encoded(message)
    if decoded.decode_error is not None:
        raise AblyException(
            f"messages[{index}] data cannot be decoded: {decoded.decode_error.message}",
            ErrorCode.INVALID_DATA_OR_ENCODING,
            400,
        )
    encode_data(decoded.data, None, None)  # 40013 for a type Ably cannot carry (RSL4a)


def _fixed_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each message without an id one now: ``<base>:<index>`` (RSL1k1)."""
    base = idempotent_base()
    for index, message in enumerate(messages):
        if not message.get("id"):
            message["id"] = f"{base}:{index}"
    return messages
