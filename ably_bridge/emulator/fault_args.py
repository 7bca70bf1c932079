"""Checking the arguments of a fault injected over HTTP before the fault is scheduled.

``POST /_emulator/faults/<name>`` passes a JSON object as keyword arguments
to a :class:`~ably_bridge.emulator.faults.Faults` method. Anything stored
there is used later, by every REST request or connection attempt that
consults the pending faults, so a bad value must be refused here (40003)
instead of breaking those later calls. Each argument must have the type its
parameter declares (``int`` means a JSON integer, not a boolean; ``float``
accepts integers; ``X | None`` accepts null) and lie in the range below.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from ably_bridge.emulator.errors import error

# name -> (lowest, highest) for numbers; a length bound for strings.
_RANGES: dict[str, tuple[float, float]] = {
    "count": (1, 1_000_000),
    "status": (400, 599),
    "code": (10000, 99999),
    "seconds": (0, 3600),
}
_CHOICES: dict[str, frozenset[str]] = {"action": frozenset({"disconnected", "detached", "error"})}
_MAX_TEXT = 1000


def _allowed_types(annotation: Any) -> tuple[set[type], bool]:
    """The plain types an annotation admits, and whether None is one of them."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        plain = {a for a in args if a is not type(None)}
        return plain, type(None) in args
    return {annotation}, False


def _check_one(method_name: str, name: str, value: Any, annotation: Any) -> None:
    plain, nullable = _allowed_types(annotation)
    where = f"{method_name}: {name}"
    if value is None:
        if not nullable:
            raise error(40003, f"{where} must not be null")
        return
    if isinstance(value, bool):
        ok = bool in plain
    elif isinstance(value, int):
        ok = int in plain or float in plain
    elif isinstance(value, float):
        ok = float in plain and math.isfinite(value)
    elif isinstance(value, str):
        ok = str in plain and len(value) <= _MAX_TEXT
    else:
        ok = False
    if not ok:
        names = " or ".join(sorted(t.__name__ for t in plain)) + (" or null" if nullable else "")
        raise error(40003, f"{where} must be {names}")
    bounds = _RANGES.get(name)
    if bounds is not None and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = bounds
        if not low <= value <= high:
            raise error(40003, f"{where} must be between {low:g} and {high:g}")
    choices = _CHOICES.get(name)
    if choices is not None and value not in choices:
        raise error(40003, f"{where} must be one of {', '.join(sorted(choices))}")


def check(method: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Refuse (40003) unknown names, missing required ones, wrong types and out-of-range values."""
    name = getattr(method, "__name__", "fault")
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    for key in kwargs:
        if key not in signature.parameters:
            raise error(40003, f"{name}: unknown argument {str(key)[:40]!r}")
    for param in signature.parameters.values():
        if param.name not in kwargs:
            if param.default is inspect.Parameter.empty:
                raise error(40003, f"{name}: argument {param.name!r} is required")
            continue
        _check_one(name, param.name, kwargs[param.name], hints.get(param.name, Any))
