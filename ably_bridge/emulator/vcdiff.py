"""Deltas for subscribers that attached with ``delta=vcdiff`` (RTL18-RTL20, PC3).

This module owns :class:`DeltaStream`, one attachment's deltas: each message
whose payload is text or binary (JSON-encoded text included; an encrypted or
otherwise encoded one is sent whole and ends the chain) goes out as a delta
against the previous one, with ``extras.delta = {"from": <previous id>,
"format": "vcdiff"}`` and ``vcdiff`` (plus ``utf-8`` for text, ``base64`` on
JSON connections) appended to its encoding. The first message after an attach
is sent whole, as Ably does.

It also owns :func:`encode`, a small VCDIFF (RFC 3284) encoder. It writes one
window whose source segment is the whole previous payload: a COPY of the
longest common prefix, then an ADD of the rest of the new payload (the default
code table, no secondary compression, no checksum). That is a valid delta for
any decoder - Ably's are smaller, not different in kind - and it is what a
client's delta handling needs to be tested against.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["DeltaStream", "encode"]

_HEADER = b"\xd6\xc3\xc4\x00\x00"  # magic "VCD", version 0, no header flags
_VCD_SOURCE = 0x01
_ADD_SIZE_0 = 1  # default code table: ADD, size follows as an integer
_COPY_SIZE_0_MODE_0 = 19  # default code table: COPY mode 0 (VCD_SELF), size follows
_MIN_COPY = 4  # a shorter prefix costs more to copy than to add


def _int(value: int) -> bytes:
    """RFC 3284 section 2: base-128 digits, most significant first, high bit on all
    but the last."""
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(digits))


def encode(source: bytes, target: bytes) -> bytes:
    """A delta that turns ``source`` into ``target``."""
    prefix = 0
    limit = min(len(source), len(target))
    while prefix < limit and source[prefix] == target[prefix]:
        prefix += 1
    if prefix < _MIN_COPY:
        prefix = 0
    data = target[prefix:]
    instructions = bytearray()
    addresses = bytearray()
    if prefix:
        instructions += bytes([_COPY_SIZE_0_MODE_0]) + _int(prefix)
        addresses += _int(0)  # VCD_SELF: the source segment starts at address 0
    if data:
        instructions += bytes([_ADD_SIZE_0]) + _int(len(data))
    body = (
        _int(len(target))
        + b"\x00"  # Delta_Indicator: nothing compressed
        + _int(len(data))
        + _int(len(instructions))
        + _int(len(addresses))
        + data
        + bytes(instructions)
        + bytes(addresses)
    )
    window = bytes([_VCD_SOURCE]) + _int(len(source)) + _int(0) + _int(len(body)) + body
    return _HEADER + window


class DeltaStream:
    """One attachment's chain of deltas; see the module docstring."""

    __slots__ = ("_base", "_base_id")

    def __init__(self) -> None:
        self._base: bytes | None = None
        self._base_id: str | None = None

    def messages(self, items: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
        """``items`` as this subscriber gets them: deltas where there is a base."""
        return [self._message(item, fmt) for item in items]

    def _message(self, item: dict[str, Any], fmt: str) -> dict[str, Any]:
        data, encoding = item.get("data"), item.get("encoding")
        payload: bytes | None = None
        text = False
        if isinstance(data, str) and encoding in (None, "json"):
            payload, text = data.encode("utf-8"), True
        elif isinstance(data, bytes | bytearray) and encoding is None:
            payload = bytes(data)
        out = item
        if payload is not None and self._base is not None and self._base_id is not None:
            delta = encode(self._base, payload)
            steps = [encoding] if encoding else []
            steps += ["utf-8", "vcdiff"] if text else ["vcdiff"]
            out = dict(item)
            out["extras"] = {
                **(item.get("extras") or {}),
                "delta": {"from": self._base_id, "format": "vcdiff"},
            }
            if fmt == "json":
                out["data"] = base64.b64encode(delta).decode("ascii")
                steps.append("base64")
            else:
                out["data"] = delta
            out["encoding"] = "/".join(steps)
        self._base = payload  # (None: a payload no delta can follow)
        self._base_id = item.get("id")
        return out
