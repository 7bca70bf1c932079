"""AMQP wire-level speed-ups for the Celery sink, on py-amqp's own internals.

This module owns everything that reaches below kombu into py-amqp, so that a
py-amqp upgrade has one place to check:

* :class:`PropertyEncoder` - the bytes py-amqp's ``_serialize_properties``
  produces for a message's properties, with table items memoised;
* :func:`buffered_frames` - while open, publishes on a channel do not wait for
  their confirm and their frames reach the socket ``WRITE_CHUNK`` bytes at a
  time instead of one ``sendall`` each;
* :class:`Confirms` - publisher-confirm bookkeeping of one channel.

Tests compare the encoder's bytes with py-amqp's and run the buffered path
against a real RabbitMQ (tests/bridge/sinks/test_celery_batching.py).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from amqp import Message as AmqpMessage  # type: ignore[import-untyped]
from amqp import spec as amqp_spec
from amqp.method_framing import frame_writer  # type: ignore[import-untyped]
from amqp.serialization import dumps as amqp_dumps  # type: ignore[import-untyped]

__all__ = [
    "ENCODABLE",
    "PER_TASK_HEADERS",
    "PROPERTY_LAYOUT",
    "WRITE_CHUNK",
    "Confirms",
    "PropertyEncoder",
    "buffered_frames",
]

# Celery task headers that differ per task (everything else is memoised).
PER_TASK_HEADERS = ("id", "root_id", "argsrepr", "expires")
WRITE_CHUNK = 64 * 1024  # publish frames are written to the socket this much at a time

# Basic content properties as py-amqp lays them out: (flag bit, name, AMQP type).
PROPERTY_LAYOUT = _PROPERTY_LAYOUT = tuple(
    (1 << (15 - i), name, kind) for i, (name, kind) in enumerate(AmqpMessage.PROPERTIES)
)
ENCODABLE = len(_PROPERTY_LAYOUT) <= 15 and all(k != "bit" for _, _, k in _PROPERTY_LAYOUT)
_SCALARS = (str, int, bool, float, type(None))
_MEMO_LIMIT = 4096


class PropertyEncoder:
    """py-amqp's encoding of a message's properties (``_serialize_properties``), faster.

    The same bytes: every table item and property is encoded by py-amqp's own
    ``dumps`` once and memoised by (name, type, value); only the per-task
    header strings (``id``, ``root_id``, ``argsrepr``, ``expires``) and the
    ``correlation_id`` are encoded each time, as py-amqp encodes a string.
    (py-amqp walks the whole header table in Python for every publish; for a
    Celery task that is about a fifth of the client's cost of a publish.)
    """

    __slots__ = ("_keys", "_memo")

    def __init__(self) -> None:
        self._memo: dict[tuple[Any, ...], bytes] = {}
        self._keys: dict[str, bytes] = {}

    def encode(self, props: dict[str, Any]) -> bytes:
        flags = 0
        parts: list[bytes] = []
        for bit, name, kind in _PROPERTY_LAYOUT:
            value = props.get(name)
            if value is None:
                continue
            flags |= bit
            if kind == "F":
                parts.append(self._table(value))
            elif name == "correlation_id" and type(value) is str:
                data = value.encode("utf-8", "surrogatepass")
                parts.append(_pack_b(len(data)) + data)
            else:
                parts.append(self._memoised(("p", name), kind, value))
        return _pack_h(flags) + b"".join(parts)

    def prop(self, name: str, kind: str, value: Any) -> bytes:
        """py-amqp's encoding of the property ``name`` (of AMQP type ``kind``)."""
        return self._memoised(("p", name), kind, value)

    def item(self, key: str, value: Any) -> bytes:
        """py-amqp's encoding of one header-table item."""
        return self._memoised(("h", key), "F", value)

    def key(self, key: str) -> bytes:
        """The encoded name of a header-table item (what precedes its value)."""
        prefix = self._keys.get(key)
        if prefix is None:
            raw = key.encode("utf-8", "surrogatepass")
            prefix = self._keys[key] = _pack_b(len(raw)) + raw
        return prefix

    def _table(self, table: dict[str, Any]) -> bytes:
        parts: list[bytes] = []
        for key, value in table.items():
            if key in PER_TASK_HEADERS and type(value) is str and type(key) is str:
                prefix = self.key(key)
                data = value.encode("utf-8", "surrogatepass")
                parts.append(prefix + _pack_ci(b"S", len(data)) + data)
            else:
                parts.append(self._memoised(("h", key), "F", value))
        data = b"".join(parts)
        return _pack_i(len(data)) + data

    def _memoised(self, where: tuple[str, str], kind: str, value: Any) -> bytes:
        """py-amqp's encoding of a property (``kind``) or of one table item (``F``)."""
        if type(value) in _SCALARS:
            memo = (*where, type(value), value)
        elif type(value) in (list, tuple, dict):
            memo = (*where, type(value), repr(value))  # (repr tells apart what encodes apart)
        else:
            return self._encode(where, kind, value)
        data = self._memo.get(memo)
        if data is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            data = self._memo[memo] = self._encode(where, kind, value)
        return data

    @staticmethod
    def _encode(where: tuple[str, str], kind: str, value: Any) -> bytes:
        if where[0] == "h":  # one item of a table: a table of one, less its length
            return bytes(amqp_dumps("F", [{where[1]: value}])[4:])
        return bytes(amqp_dumps(kind, [value]))


def _returning(data: bytes) -> Callable[[], bytes]:
    return lambda: data


_pack_b = struct.Struct("B").pack
_pack_h = struct.Struct(">H").pack
_pack_i = struct.Struct(">I").pack
_pack_ci = struct.Struct(">cI").pack


class _FrameBuffer:
    """A py-amqp transport stand-in: collects frames, writes them ``limit`` bytes at a time."""

    __slots__ = ("data", "limit", "sink")

    def __init__(self, sink: Any, limit: int) -> None:
        self.sink = sink  # the real transport's write
        self.limit = limit
        self.data = bytearray()

    def write(self, s: Any) -> None:
        self.data += s  # (a view of py-amqp's reused frame buffer: copied here)
        if len(self.data) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.data:
            data, self.data = bytes(self.data), bytearray()
            self.sink(data)


@contextlib.contextmanager
def buffered_frames(
    channel: Any, encoder: PropertyEncoder | None = None, limit: int = WRITE_CHUNK
) -> Iterator[_FrameBuffer]:
    """While open, publishes on ``channel`` do not wait, and their frames are written
    ``limit`` bytes at a time (and the rest on a clean exit).

    py-amqp writes each publish with its own ``sendall`` (and first polls the
    socket for a ``connection.blocked`` notice); here that poll happens once,
    and the broker gets the messages in large writes while the next ones are
    being built (RabbitMQ, too, spends much less per message that way).
    """
    connection = channel.connection
    with contextlib.suppress(socket.timeout):
        connection.drain_events(timeout=0)  # a blocked notice or acks that already arrived
    buffer = _FrameBuffer(connection.transport.write, limit)
    writer = connection.frame_writer
    connection.frame_writer = frame_writer(connection, buffer)
    publish = amqp_spec.Basic.Publish

    def basic_publish(
        msg: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
    ) -> None:
        if encoder is not None:
            # (if it fails, py-amqp's own encoder runs - and says what is wrong)
            with contextlib.suppress(Exception):
                msg._serialize_properties = _returning(encoder.encode(msg.properties))
        channel.send_method(publish, "Bssbb", (0, exchange, routing_key, mandatory, immediate), msg)

    channel.basic_publish = basic_publish
    try:
        yield buffer
        buffer.flush()
    finally:
        connection.frame_writer = writer
        channel.basic_publish = channel.basic_publish_confirm


class Confirms:
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
