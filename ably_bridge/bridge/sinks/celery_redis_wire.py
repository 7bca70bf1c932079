"""Celery on a Redis broker: a batch's task messages written as kombu would, in one call.

This module owns :class:`RedisTaskWriter`, the ``kombu.redis_message_template``
shortcut (:mod:`ably_bridge.shortcuts`), and :class:`WireTemplate`. kombu's
publish of one task on a Redis broker costs more than the rest of the bridge's
work for that event: ``Producer.publish`` prepares a message dict, the virtual
channel base64-encodes the body and draws a delivery tag, and
:class:`~.celery_redis.PushOnceChannel` dumps the whole dict as JSON. Here:

* per target, one sample message - its per-task fields set to placeholder
  strings - is published through kombu's own ``Producer.publish`` into
  :class:`~.celery_redis.PushOnceChannel`, which hands the message dict it
  would push back instead of pushing it (``ably_capture``). kombu's JSON of
  that dict, cut at the placeholders, is the :class:`WireTemplate`: the exact
  text kombu writes, with slots;
* per task the slots are filled - the task id (``id``, ``root_id``,
  ``correlation_id``), ``argsrepr``, the base64 body, a fresh ``delivery_tag``
  (a random version-4 UUID, as kombu draws it; a batch's from one
  ``os.urandom``) - and, once per batch, the sending thread's ``reply_to``
  and the target's ``expires`` (computed as Celery does); each
  value JSON-encoded as kombu's encoder would (``ensure_ascii``);
* the tasks of a batch are pushed by calls of
  :data:`~.celery_redis.PUSH_ONCE_LUA` (each task's push-once mark, then one
  ``LPUSH`` of many values per queue key; up to 128 tasks or 64 KiB a call,
  all written at once: one round trip), on kombu's priority-queue keys
  (``_q_for_pri``), so a worker - kombu's fetch or the atomic fetch of
  :mod:`workers.redis_fetch` - reads exactly what kombu's publish would have
  queued, in the same order.

Anything else - a target routed through a named exchange, a queue with
``x-expires``, a body encoding other than base64, an envelope that is not
JSON-safe - falls back to kombu's publish (the caller's path).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from celery import Celery
from kombu.utils.json import dumps

from ably_bridge.bridge.sinks.celery_message import TaskTemplate, args_repr
from ably_bridge.bridge.sinks.celery_redis import PushOnceChannel, sent_mark
from ably_bridge.envelope import Envelope

__all__ = ["RedisTaskWriter", "WireTemplate", "delivery_tags"]

_dumps: Any = dumps  # kombu's own JSON (untyped)

# Placeholders: plain ASCII (JSON-encoded as they are), found in kombu's JSON of the sample.
_SLOTS = {  # placeholder name -> the value that fills it
    "id": "id",
    "root": "id",
    "corr": "id",
    "repr": "repr",
    "body": "body",
    "tag": "tag",
    "reply": "reply",
    "exp": "exp",
}
_PER_BATCH = ("reply", "exp")


_VARIANT = {d: format((int(d, 16) & 3) | 8, "x") for d in "0123456789abcdef"}


def delivery_tags(n: int) -> list[str]:
    """``n`` random version-4 UUIDs as text (kombu draws a message's delivery tag with
    ``uuid4``), from one ``os.urandom`` call: a quarter of ``str(uuid4())``'s cost each."""
    h = os.urandom(16 * n).hex()
    return [
        f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{_VARIANT[h[i + 16]]}"
        f"{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
        for i in range(0, 32 * n, 32)
    ]  # fmt: skip


def _token(name: str) -> str:
    return f"@ably-bridge-slot:{name}@"


_TOKEN_RE = re.compile(r'"@ably-bridge-slot:(\w+)@"')


class WireTemplate:
    """kombu's JSON of one target's task message, cut at its per-task fields."""

    __slots__ = ("body_tail", "expires", "key", "mark_head", "pieces", "repr_limit")

    def __init__(
        self,
        pieces: list[str],
        key: str,
        mark_head: str,
        template: TaskTemplate,
    ) -> None:
        self.pieces = pieces  # literal, slot, literal, slot, ..., literal
        self.key = key  # the Redis list kombu pushes onto (priority layout)
        self.mark_head = mark_head  # + task id = the push-once mark
        self.body_tail = template.body_tail
        self.expires = template.expires
        self.repr_limit = template.repr_limit

    def bind(self, reply_to: str, expires: str | None) -> str:
        """A ``str.format`` text with this batch's constants filled in."""
        constants = {"reply": encode_basestring_ascii(reply_to)}
        if expires is not None:
            constants["exp"] = encode_basestring_ascii(expires)
        out = []
        for i, piece in enumerate(self.pieces):
            if i % 2 == 0:
                out.append(_braces(piece))
            elif piece in constants:
                out.append(_braces(constants[piece]))
            else:
                out.append("{" + piece + "}")
        return "".join(out)


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def capture(channel: Any, producer: Any, template: TaskTemplate) -> WireTemplate | None:
    """The :class:`WireTemplate` of ``template`` on ``channel``, or None (kombu publishes)."""
    headers = dict(template.headers)
    headers.update(id=_token("id"), root_id=_token("root"), argsrepr=_token("repr"))
    if template.expires is not None:
        headers["expires"] = _token("exp")
    headers.update(template.overrides)
    options = {k: v for k, v in template.publish.items() if k != "retry_policy"}
    if options.get("exchange") != "":  # routed by bindings read from Redis: kombu's path
        return None
    seen: list[tuple[str, dict[str, Any]]] = []
    channel.ably_capture = seen
    try:
        producer.publish(
            _token("body"), headers=headers, correlation_id=_token("corr"),
            reply_to=_token("reply"), retry=False, declare=[], **options,
        )  # fmt: skip
    finally:
        channel.ably_capture = None
    if len(seen) != 1:
        return None
    queue, message = seen[0]
    expires_of = getattr(channel, "_expires", None)
    props = dict(message.get("properties") or {})
    if (
        (expires_of and queue in expires_of)
        or props.get("body_encoding") != "base64"
        or base64.b64decode(message.get("body", "")) != _token("body").encode()
        or "delivery_tag" not in props
    ):
        return None
    props["delivery_tag"] = _token("tag")
    message = {**message, "body": _token("body"), "properties": props}
    pieces = _TOKEN_RE.split(_dumps(message))
    names = pieces[1::2]
    wanted = {"id", "root", "corr", "repr", "body", "tag", "reply"}
    if template.expires is not None:
        wanted.add("exp")
    if sorted(names) != sorted(wanted):  # each exactly once, nothing else
        return None
    for i in range(1, len(pieces), 2):
        pieces[i] = _SLOTS[pieces[i]]
    key = channel._q_for_pri(queue, channel._get_message_priority(message, reverse=False))
    prefix = channel.ably_mark_prefix
    head = sent_mark(prefix, queue, "")
    if sent_mark(prefix, queue, "t") != head + "t":
        return None
    return WireTemplate(pieces, key, head, template)


class RedisTaskWriter:
    """Pushes a batch of templated Celery tasks onto a Redis broker in one script call."""

    def __init__(self) -> None:
        # id(task template) -> (that template, its wire template or None: kombu publishes)
        self._wired: dict[int, tuple[TaskTemplate, WireTemplate | None]] = {}

    def wire(self, template: TaskTemplate, channel: Any, producer: Any) -> WireTemplate | None:
        entry = self._wired.get(id(template))
        if entry is not None and entry[0] is template:
            return entry[1]
        wired = capture(channel, producer, template)
        if len(self._wired) >= 4096:
            self._wired.clear()
        self._wired[id(template)] = (template, wired)
        return wired

    def push(
        self, app: Celery, producer: Any, tasks: Sequence[tuple[TaskTemplate, Envelope, str]]
    ) -> bool:
        """Push ``tasks`` ((template, envelope, task id)); False if one of them cannot be
        written here (then nothing was pushed and kombu's publish is the way)."""
        channel = producer.channel
        if not isinstance(channel, PushOnceChannel):
            return False
        bound: dict[int, str] = {}
        items: list[tuple[str, str, str]] = []
        reply_to = app.thread_oid
        b64 = base64.b64encode
        tags = delivery_tags(len(tasks))
        for (template, env, task_id), tag in zip(tasks, tags, strict=True):
            wired = self.wire(template, channel, producer)
            if wired is None:
                return False
            fmt = bound.get(id(wired))
            if fmt is None:
                fmt = bound[id(wired)] = wired.bind(reply_to, template.expires_at(app))
            try:
                body = f"[[{env.to_json()}]{wired.body_tail}"
            except (TypeError, ValueError):  # not JSON-safe as it is: send_task decides
                return False
            payload = fmt.format(
                id='"' + task_id + '"',
                repr=encode_basestring_ascii(args_repr(env, wired.repr_limit)),
                body='"' + b64(body.encode()).decode("ascii") + '"',
                tag='"' + tag + '"',
            )
            items.append((wired.mark_head + task_id, wired.key, payload))
        with channel.conn_or_acquire() as client:
            channel.push_once(client, items)
        return True
