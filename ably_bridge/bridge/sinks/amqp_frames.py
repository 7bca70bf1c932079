"""Celery on RabbitMQ: a templated task's AMQP frames built here, as py-amqp would write them.

This module owns :class:`TaskFrames`, the ``amqp.task_frames`` shortcut
(:mod:`ably_bridge.shortcuts`), and :class:`FrameTemplate`. Within a buffered
batch (:func:`~.amqp_wire.buffered_frames`) a Celery task's publish costs, per
task, kombu's ``Producer.publish`` (a property dict, an ``amqp.Message``), the
encoding of about twenty header-table items and py-amqp's frame writer. Here:

* per target, one sample message - its per-task fields set to placeholder
  strings - goes through kombu's own ``Producer.publish`` to a recording
  ``basic_publish``; what kombu hands py-amqp (the message's properties and
  body, the exchange and routing key) becomes the :class:`FrameTemplate`: every
  property and header-table item encoded once, as py-amqp encodes it
  (:class:`~.amqp_wire.PropertyEncoder`), with slots for the per-task ones;
* per task, the slots are filled - the task id (``id``, ``root_id``,
  ``correlation_id``) and ``argsrepr`` (and once per batch ``reply_to`` and
  ``expires``) - and the method, content-header and body frames are laid out
  as py-amqp's ``frame_writer`` lays them out (the body cut into
  ``frame_max - 8`` byte frames), then written into the batch's frame buffer.

The delivery tags, the confirms and the connection's frame count
(``bytes_sent``, which its heartbeat reads) are what they would be after the
same publishes through py-amqp. Anything the template cannot reproduce (a
property or header holding a placeholder twice, a non-string id) leaves the
target to kombu's publish.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from amqp import spec as amqp_spec  # type: ignore[import-untyped]
from amqp.serialization import dumps as amqp_dumps  # type: ignore[import-untyped]
from celery import Celery

from ably_bridge.bridge.sinks.amqp_wire import PROPERTY_LAYOUT, PropertyEncoder
from ably_bridge.bridge.sinks.celery_message import TaskTemplate, args_repr
from ably_bridge.envelope import Envelope

__all__ = ["FrameTemplate", "TaskFrames"]

_pack_b = struct.Struct("B").pack
_pack_h = struct.Struct(">H").pack
_pack_i = struct.Struct(">I").pack
_pack_frame = struct.Struct(">BHI").pack
_pack_content = struct.Struct(">HHQ").pack
_END = b"\xce"

# Placeholder -> the value that fills it (table items: longstr; properties: shortstr).
_SLOTS = {"id": "id", "root": "id", "corr": "id", "repr": "repr", "reply": "reply", "exp": "exp"}
_PER_BATCH = ("reply", "exp")


def _token(name: str) -> str:
    return f"@ably-bridge-slot:{name}@"


_TOKENS = {_token(name): name for name in _SLOTS}


def _longstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"S" + _pack_i(len(data)) + data


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > 255:
        raise ValueError("shortstr longer than 255 bytes")
    return _pack_b(len(data)) + data


class FrameTemplate:
    """A target's publish as py-amqp encodes it, with slots for the per-task fields.

    ``before``: the property flags and the properties before the header table;
    ``table``/``after``: encoded pieces (bytes) and slot names (str) of the header
    table and of the properties after it.
    """

    __slots__ = ("after", "before", "body_tail", "expires", "method", "repr_limit", "table")

    def __init__(
        self,
        method: bytes,
        before: bytes,
        table: list[bytes | str],
        after: list[bytes | str],
        template: TaskTemplate,
    ) -> None:
        self.method = method  # the basic.publish method frame's payload
        self.before = before
        self.table = table
        self.after = after
        self.body_tail = template.body_tail
        self.expires = template.expires
        self.repr_limit = template.repr_limit

    def bind(self, reply_to: str, expires: str | None) -> _Bound:
        """This batch's pieces: ``reply_to`` and ``expires`` filled in, neighbours merged."""
        constants: dict[str, bytes] = {"reply": _shortstr(reply_to)}
        if expires is not None:
            constants["exp"] = _longstr(expires)
        return _Bound(
            _merge(self.table, constants), _merge(self.after, constants), self.before, self
        )


def _merge(pieces: list[bytes | str], constants: dict[str, bytes]) -> list[bytes | str]:
    out: list[bytes | str] = []
    for piece in pieces:
        if isinstance(piece, str) and piece in constants:
            piece = constants[piece]
        if isinstance(piece, bytes) and out and isinstance(out[-1], bytes):
            out[-1] = out[-1] + piece
        else:
            out.append(piece)
    return out


class _Bound:
    """A :class:`FrameTemplate` bound to one batch (its ``reply_to`` and ``expires``)."""

    __slots__ = ("after", "before", "table", "wire")

    def __init__(
        self, table: list[bytes | str], after: list[bytes | str], before: bytes, wire: FrameTemplate
    ) -> None:
        self.table = table
        self.after = after
        self.before = before
        self.wire = wire

    def frames(self, env: Envelope, task_id: str, channel_id: int, frame_max: int) -> bytes:
        """The method, content-header and body frames of the task for ``env``."""
        wire = self.wire
        values = {
            "id": (_longstr(task_id), _shortstr(task_id)),
            "repr": (_longstr(args_repr(env, wire.repr_limit)), b""),
        }
        table = b"".join(p if type(p) is bytes else values[p][0] for p in self.table)  # type: ignore[index]
        after = b"".join(p if type(p) is bytes else values[p][1] for p in self.after)  # type: ignore[index]
        body = f"[[{env.to_json()}]{wire.body_tail}".encode()
        header = _pack_content(60, 0, len(body)) + self.before + _pack_i(len(table)) + table + after
        out = [
            _pack_frame(1, channel_id, len(wire.method)), wire.method, _END,
            _pack_frame(2, channel_id, len(header)), header, _END,
        ]  # fmt: skip
        chunk = frame_max - 8
        for start in range(0, len(body), chunk):
            piece = body[start : start + chunk]
            out += (_pack_frame(3, channel_id, len(piece)), piece, _END)
        return b"".join(out)


def capture(
    channel: Any, producer: Any, template: TaskTemplate, encoder: PropertyEncoder
) -> FrameTemplate | None:
    """The :class:`FrameTemplate` of ``template``, or None (kombu publishes it)."""
    headers = dict(template.headers)
    headers.update(id=_token("id"), root_id=_token("root"), argsrepr=_token("repr"))
    if template.expires is not None:
        headers["expires"] = _token("exp")
    headers.update(template.overrides)
    options = {k: v for k, v in template.publish.items() if k != "retry_policy"}
    seen: list[tuple[Any, tuple[Any, ...]]] = []

    def record(msg: Any, exchange: str = "", routing_key: str = "", mandatory: bool = False,
               immediate: bool = False, **_: Any) -> None:  # fmt: skip
        seen.append((msg, (0, exchange, routing_key, mandatory, immediate)))

    saved = channel.__dict__.get("basic_publish")
    channel.basic_publish = record
    try:
        producer.publish(
            "", headers=headers, correlation_id=_token("corr"), reply_to=_token("reply"),
            retry=False, declare=[], **options,
        )  # fmt: skip
    finally:
        if saved is None:
            del channel.basic_publish
        else:
            channel.basic_publish = saved
    if len(seen) != 1:
        return None
    msg, args = seen[0]
    if msg.body not in (b"", "") or options.get("content_encoding") != "utf-8":
        return None
    klass, method_id = amqp_spec.Basic.Publish
    method = _pack_h(klass) + _pack_h(method_id) + bytes(amqp_dumps("Bssbb", args))
    return _layout(msg.properties, method, template, encoder)


def _layout(
    props: dict[str, Any], method: bytes, template: TaskTemplate, encoder: PropertyEncoder
) -> FrameTemplate | None:
    flags = 0
    before: list[bytes] = []
    table: list[bytes | str] = []
    after: list[bytes | str] = []
    found: list[str] = []
    for bit, name, kind in PROPERTY_LAYOUT:
        value = props.get(name)
        if value is None:
            continue
        flags |= bit
        if kind == "F":
            if table or after or not isinstance(value, dict):
                return None
            for key, item in value.items():
                slot = _TOKENS.get(item) if type(item) is str else None
                if slot is None:
                    table.append(encoder.item(key, item))
                else:
                    found.append(slot)
                    table += (encoder.key(key), _SLOTS[slot])
        elif type(value) is str and value in _TOKENS:
            if not table:  # (a per-task property before the header table: not Celery's)
                return None
            found.append(_TOKENS[value])
            after.append(_SLOTS[_TOKENS[value]])
        elif table:
            after.append(encoder.prop(name, kind, value))
        else:
            before.append(encoder.prop(name, kind, value))
    wanted = ["corr", "id", "repr", "reply", "root"]
    if template.expires is not None:
        wanted.append("exp")
    if sorted(found) != sorted(wanted) or not table:
        return None
    if any(type(p) is str and p not in ("id", "reply") for p in after):
        return None  # (a per-task string property other than correlation_id/reply_to)
    return FrameTemplate(method, _pack_h(flags) + b"".join(before), table, after, template)


class TaskFrames:
    """Builds templated Celery tasks' publish frames for a buffered AMQP batch."""

    def __init__(self, encoder: PropertyEncoder) -> None:
        self._encoder = encoder
        # id(task template) -> (that template, its frame template or None: kombu publishes)
        self._wired: dict[int, tuple[TaskTemplate, FrameTemplate | None]] = {}

    def batch(self, app: Celery, channel: Any, producer: Any) -> Callable[..., bytes | None]:
        """A function (template, envelope, task id) -> the frames of that task, or None
        when kombu must publish it; for one batch on ``channel``."""
        bound: dict[int, _Bound] = {}
        reply_to = app.thread_oid
        channel_id = channel.channel_id
        frame_max = channel.connection.frame_max

        def frames(template: TaskTemplate, env: Envelope, task_id: str) -> bytes | None:
            wired = self._wire(template, channel, producer)
            if wired is None:
                return None
            this = bound.get(id(wired))
            if this is None:
                this = bound[id(wired)] = wired.bind(reply_to, template.expires_at(app))
            try:
                return this.frames(env, task_id, channel_id, frame_max)
            except (TypeError, ValueError):  # not JSON-safe as it is: send_task decides
                return None

        return frames

    def _wire(self, template: TaskTemplate, channel: Any, producer: Any) -> FrameTemplate | None:
        entry = self._wired.get(id(template))
        if entry is not None and entry[0] is template:
            return entry[1]
        wired = capture(channel, producer, template, self._encoder)
        if len(self._wired) >= 4096:
            self._wired.clear()
        self._wired[id(template)] = (template, wired)
        return wired
