"""Channel name validation and qualifier parsing (ably-protocol.md 3.1, RTS5).

A client-facing channel name may carry a qualifier: ``[meta]x`` and
``[queue]x`` name their own resource types; ``[?k=v]x`` carries channel params;
``[meta?k=v]x`` both; ``[filter=<b64>]x`` / ``[filter=<b64>?k=v]x`` is a
derived (filtered) view of ``x``. :func:`parse_channel_name` returns the base
channel the state keys on, the resource capabilities are checked against, and
the params/filter; invalid names raise 40010. Valid names are parsed once and
remembered (a bounded cache: every publish names its channel), so a
:class:`ChannelName` and its ``params`` are shared and never mutated.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ably_bridge.emulator.errors import error

MAX_NAME_LENGTH = 1024


@dataclass(frozen=True)
class ChannelName:
    full: str
    base: str
    params: dict[str, str] = field(default_factory=dict)
    filter_expr: str | None = None

    @property
    def resource(self) -> str:
        return self.base


def _invalid(name: str, why: str) -> Exception:
    return error(40010, f"invalid channel name {name[:100]!r}: {why}")


def _check_plain(full: str, rest: str) -> None:
    if not rest:
        raise _invalid(full, "empty")
    if rest[0] in ":,[" or rest[0].isspace():
        raise _invalid(full, "bad first character")


_CACHE_SIZE = 4096
_parsed: dict[str, ChannelName] = {}  # valid names seen lately (cleared when full)


def parse_channel_name(name: Any) -> ChannelName:
    """Validate ``name`` and split off its qualifier (40010 when invalid)."""
    if type(name) is str:
        found = _parsed.get(name)
        if found is not None:
            return found
    parsed = _parse(name)
    if len(_parsed) >= _CACHE_SIZE:
        _parsed.clear()
    _parsed[name] = parsed
    return parsed


def _parse(name: Any) -> ChannelName:
    if not isinstance(name, str) or not name:
        raise error(40010, "channel name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(name, "too long")
    if "\n" in name or "\r" in name or "\x00" in name:
        raise _invalid(name, "contains a line break")
    if not name.startswith("["):
        _check_plain(name, name)
        return ChannelName(name, name)
    end = name.find("]")
    if end < 0:
        raise _invalid(name, "unterminated qualifier")
    qualifier, rest = name[1:end], name[end + 1 :]
    if qualifier in ("meta", "queue"):
        _check_plain(name, rest)
        return ChannelName(name, name)
    kind, _, query = qualifier.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    _check_plain(name, rest)
    if kind == "":
        return ChannelName(name, rest, params)
    if kind == "meta":
        return ChannelName(name, f"[meta]{rest}", params)
    if kind.startswith("filter="):
        encoded = kind[len("filter=") :]
        try:
            expr = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise _invalid(name, "filter is not base64 UTF-8") from exc
        return ChannelName(name, rest, params, expr)
    raise _invalid(name, f"unknown qualifier [{kind}]")
