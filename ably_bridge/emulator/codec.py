"""Wire formats: JSON and msgpack frames/bodies, and payload transcoding.

The emulator stores payload *semantics* rather than bytes (ably-protocol.md
5.6): a JSON payload whose last encoding step is ``base64`` is held as bytes
with that step removed, binary data published over msgpack is held as bytes,
and every other encoding (``json``, ``utf-8``, ``cipher+...``) passes through
untouched. On the way out, JSON readers get bytes as base64 text with
``base64`` appended to ``encoding`` and msgpack readers get ``bin``.

:func:`ingest` applies the inbound rule to a Message/PresenceMessage dict;
:func:`encode` serialises a ProtocolMessage or REST body for one format.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any, Literal

import msgpack

from ably_bridge.emulator.errors import error

log = logging.getLogger(__name__)

Format = Literal["json", "msgpack"]
Frame = str | bytes

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/x-msgpack"


# Nesting deeper than this is refused: nothing in Ably's protocol needs it, and
# re-encoding it could exhaust the interpreter's recursion limit.
MAX_DEPTH = 100


class _Refused(ValueError):
    """A decodable value the emulator will not hold (the reason is the message)."""


def _no_ext(code: int, data: bytes) -> Any:
    raise _Refused(f"msgpack extension type {code} is not supported")


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON")


def _check_plain(value: Any) -> None:
    """Only JSON's data model (plus bytes): string keys, finite numbers, bounded depth.

    Every decoded frame passes here, so the common leaves (strings, booleans,
    bytes, null) are told by their exact type before any other test.
    """
    leaves = _LEAVES
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _Refused("map keys must be strings")
                if type(child) in leaves:
                    continue
                if isinstance(child, _CONTAINERS):
                    stack.append((child, depth + 1))
                else:
                    _check_scalar(child)
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            for child in item:
                if type(child) in leaves:
                    continue
                if isinstance(child, _CONTAINERS):
                    stack.append((child, depth + 1))
                else:
                    _check_scalar(child)
        else:
            _check_scalar(item)


_LEAVES = frozenset({str, bool, bytes, type(None)})  # always acceptable as they are
_CONTAINERS = (dict, list)
_SCALARS = (str, int, float, bool, bytes, type(None))
# msgpack's integer range: anything outside it could not be sent to a msgpack reader.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _check_scalar(value: Any) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("NaN and infinite numbers are not accepted")
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _Refused("integers must fit in 64 bits")
    elif not isinstance(value, _SCALARS):
        raise _Refused(f"unsupported value of type {type(value).__name__}")


def _check_text(value: Any) -> None:
    """Every string (keys too) is valid Unicode: no lone surrogate from a ``\\ud800`` escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _Refused("strings must be valid Unicode (lone surrogate)") from exc


def decode(raw: str | bytes, fmt: Format) -> Any:
    """Parse a frame or body; raises 40001 when unreadable or outside JSON's data model.

    Refused: msgpack extension types (including timestamps), non-string map
    keys, NaN and infinities (JSON's ``NaN`` literal too), integers outside
    64 bits, lone UTF-16
    surrogates (JSON ``\\ud800`` escapes), nesting past
    :data:`MAX_DEPTH`. What is accepted can always be written back as valid
    JSON or msgpack.
    """
    try:
        if fmt == "msgpack" and isinstance(raw, bytes | bytearray):
            value = msgpack.unpackb(
                raw, raw=False, strict_map_key=False, ext_hook=_no_ext, timestamp=0
            )
        else:
            if isinstance(raw, bytes | bytearray):
                raw = bytes(raw).decode("utf-8")
            value = json.loads(raw, parse_constant=_no_constant)
            if "\\ud" in raw.lower():  # escapes of UTF-16 surrogates: lone ones are refused
                _check_text(value)
        _check_plain(value)
        return value
    except _Refused as exc:
        raise error(40001, f"unable to decode {fmt} body: {exc}") from exc
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise error(40001, f"unable to decode {fmt} body: {exc.__class__.__name__}") from exc
    except Exception as exc:  # msgpack raises assorted errors on garbage
        raise error(40001, f"unable to decode {fmt} body: {exc.__class__.__name__}") from exc


def ingest(item: Mapping[str, Any], fmt: Format) -> dict[str, Any]:
    """Copy a Message/PresenceMessage into stored form (base64 over JSON becomes bytes)."""
    out = dict(item)
    data = out.get("data")
    encoding = out.get("encoding")
    if isinstance(data, bytearray):
        out["data"] = bytes(data)
    if fmt == "json" and isinstance(data, str) and isinstance(encoding, str):
        steps = encoding.split("/")
        if steps and steps[-1] == "base64":
            try:
                out["data"] = base64.b64decode(data.replace("\n", ""), validate=True)
            except (binascii.Error, ValueError):
                return out
            rest = "/".join(steps[:-1])
            if rest:
                out["encoding"] = rest
            else:
                out.pop("encoding", None)
    return out


def _for_json(item: Mapping[str, Any]) -> dict[str, Any]:
    data = item.get("data")
    if not isinstance(data, bytes):
        return dict(item)
    out = dict(item)
    out["data"] = base64.b64encode(data).decode("ascii")
    encoding = item.get("encoding")
    out["encoding"] = f"{encoding}/base64" if encoding else "base64"
    return out


def jsonable(value: Any) -> Any:
    """Deep copy of ``value`` with every bytes payload in ``data`` turned into base64."""
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        if "data" in value and isinstance(value.get("data"), bytes):
            value = _for_json(value)
        return {
            k: jsonable(v) if isinstance(v, list | dict | bytes) else v for k, v in value.items()
        }
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


_local = threading.local()  # one msgpack Packer per thread (several emulators may run)
_KEEP_PACKER_BELOW = 1 << 20


def _packer() -> msgpack.Packer:
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(obj: Any, fmt: Format) -> Frame:
    """Serialise a ProtocolMessage or body: compact JSON text, or msgpack bytes.

    msgpack goes through a Packer kept per thread (``packb`` builds one per call);
    a Packer that fails part-way starts empty again, so nothing leaks between calls.
    """
    if fmt == "msgpack":
        packed: bytes = _packer().pack(obj)
        if len(packed) > _KEEP_PACKER_BELOW:
            del _local.packer  # its buffer grew to this size: let it go
        return packed
    try:  # fast path: nothing binary inside, so no copy is needed
        return _JSON.encode(obj)
    except TypeError:
        return _JSON.encode(jsonable(obj))


def content_type(fmt: Format) -> str:
    return MSGPACK_TYPE if fmt == "msgpack" else JSON_TYPE


def format_of_content_type(value: str | None) -> Format:
    """Body format from a Content-Type header (JSON unless it says msgpack)."""
    if value and "msgpack" in value.lower():
        return "msgpack"
    return "json"


def response_format(accept: str | None, format_param: str | None) -> Format:
    """Reply format: an explicit Accept wins, then ``?format=``, then JSON (7.1)."""
    if accept:
        lowered = accept.lower()
        if "msgpack" in lowered:
            return "msgpack"
        if "json" in lowered:
            return "json"
    if format_param and format_param.lower() == "msgpack":
        return "msgpack"
    return "json"


_TYPED_FIELDS = (("id", 40031), ("connectionKey", 40006), ("encoding", 40013))
_STR_OR_NONE = (str, type(None))
_DICT_OR_NONE = (dict, type(None))


def check_fields(item: Mapping[str, Any]) -> None:
    """The typed fields of a Message/PresenceMessage have their types (TM2, TP3)."""
    for name, code in _TYPED_FIELDS:
        if not isinstance(item.get(name, ""), _STR_OR_NONE):
            raise error(code, f"{name} must be a string")
    if not isinstance(item.get("extras", {}), _DICT_OR_NONE):
        raise error(40032, "extras must be an object")


def data_size(item: Mapping[str, Any]) -> int:
    """Message size as Ably counts it (TM6): name + data + clientId + JSON(extras)."""
    size = 0
    for key in ("name", "clientId"):
        value = item.get(key)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    data = item.get("data")
    if isinstance(data, str):
        size += len(data.encode("utf-8"))
    elif isinstance(data, bytes):
        size += len(data)
    elif data is not None:
        size += len(_JSON.encode(jsonable(data)))
    extras = item.get("extras")
    if extras is not None:
        size += len(_JSON.encode(jsonable(extras)))
    return size
