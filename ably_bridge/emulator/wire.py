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
from collections.abc import Mapping
from typing import Any, Literal

import msgpack

from ably_bridge.emulator.proto import error

log = logging.getLogger(__name__)

Format = Literal["json", "msgpack"]
Frame = str | bytes

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/x-msgpack"


def decode(raw: str | bytes, fmt: Format) -> Any:
    """Parse a frame or body; raises an Ably 40000-family error when unreadable."""
    try:
        if fmt == "msgpack" and isinstance(raw, bytes | bytearray):
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        if isinstance(raw, bytes | bytearray):
            raw = bytes(raw).decode("utf-8")
        return json.loads(raw)
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
        return {k: jsonable(v) if isinstance(v, list | dict) else v for k, v in value.items()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def encode(obj: Any, fmt: Format) -> Frame:
    """Serialise a ProtocolMessage or body: compact JSON text, or msgpack bytes."""
    if fmt == "msgpack":
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
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
        size += len(json.dumps(data, separators=(",", ":")))
    extras = item.get("extras")
    if extras is not None:
        try:
            size += len(json.dumps(extras, separators=(",", ":")))
        except (TypeError, ValueError):
            log.debug("extras not JSON-serialisable while sizing a message")
    return size
