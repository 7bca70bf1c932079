"""Argument checks of the ``ably.*`` tasks: a bad argument fails as a 400, naming it.

This module owns :func:`bind`, which every task calls with the positional and
keyword arguments the broker delivered, before any Ably request. It refuses,
with an :class:`~ably_bridge.errors.AblyException` that names the argument
(never its value, which might be large or private):

* a missing required argument or an unknown one: 40000 (bad request);
* a value of the wrong type (``messages`` that is not a list of objects, a
  ``limit`` that is not an integer, a message ``name`` that is not a string...):
  40003 (invalid parameter value).

Checks the REST layer already makes with an Ably code (a limit out of range, a
direction, a channel name) are left to it. JSON is the task serializer, so a
value can only be a JSON type: ``bool`` is refused where a number is meant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ably_bridge.errors import AblyException, ErrorCode

__all__ = ["SIGNATURES", "bind", "check_message"]

Check = Callable[[str, Any], None]

_MESSAGE_STRINGS = ("id", "name", "clientId", "connectionId", "connectionKey", "encoding")


def _bad(name: str, expected: str) -> AblyException:
    return AblyException(
        f"argument {name} must be {expected}", ErrorCode.INVALID_PARAMETER_VALUE, 400
    )


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _bad(name, "a string")


def _integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "an integer")


def _number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, "a number")


def _time(name: str, value: Any) -> None:
    """A time bound: milliseconds since the epoch (an integer)."""
    _integer(name, value)


def _object(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _bad(name, "an object")


def _capability(name: str, value: Any) -> None:
    if not isinstance(value, Mapping | str):
        raise _bad(name, "an object or a JSON string")


def _message(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _bad(name, "an object (a message)")
    for key in _MESSAGE_STRINGS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise _bad(f"{name}.{key}", "a string")
    if value.get("extras") is not None and not isinstance(value["extras"], Mapping):
        raise _bad(f"{name}.extras", "an object")
    if value.get("timestamp") is not None:
        _integer(f"{name}.timestamp", value["timestamp"])


check_message = _message


def _messages(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise _bad(name, "a list of messages")
    for index, item in enumerate(value):
        _message(f"{name}[{index}]", item)


def _specs(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or not value:
        raise _bad(name, "a non-empty list of {channels, messages} objects")
    for index, spec in enumerate(value):
        where = f"{name}[{index}]"
        _object(where, spec)
        channels = spec.get("channels")
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list | tuple) or not channels:
            raise _bad(f"{where}.channels", "a channel name or a non-empty list of them")
        for position, channel in enumerate(channels):
            _string(f"{where}.channels[{position}]", channel)
        _messages(f"{where}.messages", spec.get("messages"))
        if not spec.get("messages"):
            raise _bad(f"{where}.messages", "a non-empty list of messages")


_PAGE: dict[str, Check] = {"limit": _integer, "cursor": _string, "max_items": _integer}
_RANGE: dict[str, Check] = {"start": _time, "end": _time, "direction": _string}

# Per task: the arguments in positional order, each with its check; then the required ones.
SIGNATURES: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    "ably.publish": (
        {
            "channel": _string,
            "messages": _messages,
            "params": _object,
            "first_attempt_ms": _integer,
        },
        frozenset({"channel", "messages"}),
    ),
    "ably.publish_batch": (
        {"specs": _specs, "first_attempt_ms": _integer},
        frozenset({"specs"}),
    ),
    "ably.history": ({"channel": _string, **_RANGE, **_PAGE}, frozenset({"channel"})),
    "ably.presence_get": (
        {"channel": _string, "client_id": _string, "connection_id": _string, **_PAGE},
        frozenset({"channel"}),
    ),
    "ably.stats": ({**_RANGE, "unit": _string, **_PAGE}, frozenset()),
    "ably.time": ({}, frozenset()),
    "ably.channel_status": ({"channel": _string}, frozenset({"channel"})),
    "ably.token_request": (
        {"client_id": _string, "capability": _capability, "ttl": _number, "kind": _string},
        frozenset(),
    ),
}


# Every task also takes ``deferrals``: how often the retry budget re-scheduled it
# without a request (set by the runner, not by callers).
for _checks, _required in SIGNATURES.values():
    _checks["deferrals"] = _integer


def bind(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a call of ``task`` by name, checked; ``None`` values dropped.

    Raises :class:`AblyException` 40000 for a missing, unknown or doubled
    argument and 40003 for a value of the wrong type, naming the argument.
    """
    checks, required = SIGNATURES[task]
    names = [n for n in checks if n != "deferrals"]  # keyword only
    if len(args) > len(names):
        raise AblyException(
            f"{task} takes at most {len(names)} positional arguments ({len(args)} given)",
            ErrorCode.BAD_REQUEST,
            400,
        )
    bound: dict[str, Any] = {}
    for name, value in zip(names, args, strict=False):
        bound[name] = value
    for name, value in kwargs.items():
        if name not in checks:
            raise AblyException(f"{task} has no argument {name}", ErrorCode.BAD_REQUEST, 400)
        if name in bound:
            raise AblyException(f"{task} got argument {name} twice", ErrorCode.BAD_REQUEST, 400)
        bound[name] = value
    for name in sorted(required):
        if bound.get(name) is None:
            raise AblyException(f"{task} needs the argument {name}", ErrorCode.BAD_REQUEST, 400)
    out: dict[str, Any] = {}
    for name, value in bound.items():
        if value is None:
            continue
        checks[name](name, value)
        out[name] = value
    return out
