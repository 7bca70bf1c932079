"""Readers for the fields of wire dicts, shared by the message and frame models.

Two kinds: *tolerant* readers (``opt_*``) for fields inside a Message or
PresenceMessage, where a value of the wrong type reads as ``None`` so that one
odd field does not lose a frame of messages; and *strict* readers (``req_*``)
for a ProtocolMessage's own fields, where a wrong type makes the frame
malformed (:class:`EncodingError` 40013). ``null`` always means absent (RSF1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ably_bridge.errors import EncodingError, ErrorCode

__all__ = [
    "as_dict_list",
    "as_int",
    "as_list",
    "as_map",
    "as_str",
    "malformed",
    "not_a_map",
    "opt_dict",
    "opt_int",
    "opt_str",
    "req_int",
    "req_str",
]


# Tolerant readers (message level): a value of the wrong type reads as None.
def opt_str(value: Any) -> str | None:
    return value if type(value) is str else None


def opt_int(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    return None


def opt_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    return None


# Strict readers (frame level): a value of the wrong type makes the frame malformed.
def malformed(where: str, expected: str) -> EncodingError:
    return EncodingError(
        f"malformed protocol message: {where} must be {expected}",
        ErrorCode.INVALID_DATA_OR_ENCODING,
        400,
    )


def as_str(value: Any, where: str) -> str:
    """A present value that must be a string."""
    if type(value) is str:
        return value
    raise malformed(where, "a string")


def as_int(value: Any, where: str) -> int:
    """A present value that must be an integer (an integral float is accepted)."""
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    raise malformed(where, "an integer")


def as_map(value: Any, where: str) -> Mapping[str, Any]:
    """A present value that must be an object/map."""
    if isinstance(value, Mapping):
        return value
    raise malformed(where, "an object")


def as_list(value: Any, where: str) -> list[Any]:
    """A present value that must be an array (a tuple is read as one)."""
    if type(value) is list:
        return value
    if isinstance(value, tuple):
        return list(value)
    raise malformed(where, "an array")


def as_dict_list(value: Any, where: str) -> list[dict[str, Any]]:
    """A present value that must be an array of objects."""
    items = as_list(value, where)
    for item in items:
        if not isinstance(item, Mapping):
            raise malformed(where, "an array of objects")
    return items


def req_str(raw: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = raw.get(key)
    return None if value is None else as_str(value, where + key)


def req_int(raw: Mapping[str, Any], key: str, where: str = "") -> int | None:
    value = raw.get(key)
    return None if value is None else as_int(value, where + key)


def not_a_map(what: str, raw: object) -> EncodingError:
    return EncodingError(
        f"a {what} must be an object/map, not {type(raw).__name__}",
        ErrorCode.INVALID_DATA_OR_ENCODING,
        400,
    )
