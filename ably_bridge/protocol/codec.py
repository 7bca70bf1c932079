"""Wire formats: realtime frames and REST bodies in JSON or msgpack.

This module owns serialisation: it is the only place frames and REST bodies
meet :mod:`json` and :mod:`msgpack` (the RSL4 ``json`` payload step lives in
:mod:`ably_bridge.encoding.payload`). One ProtocolMessage per WebSocket frame:
compact JSON text, or a msgpack map packed with ``use_bin_type=True`` so
binary data travels as ``bin`` and text as ``str`` (ably-protocol.md 1.2).

Every failure surfaces as :class:`EncodingError` with code 40013 ("invalid
data or encoding"): whatever is wrong with a frame or body - truncated,
garbage, too large, not a map, a field of the wrong type - the bytes could not
become a message. (40000 is left for callers passing bad arguments.) Decoding
never lets another exception type escape, because a reader thread must be able
to report a bad frame and carry on.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack

from ably_bridge.errors import EncodingError, ErrorCode
from ably_bridge.protocol.models import ProtocolMessage

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "MAX_FRAME_BYTES",
    "MSGPACK_CONTENT_TYPE",
    "content_type_for",
    "decode_body",
    "decode_frame",
    "encode_body",
    "encode_frame",
]

JSON_CONTENT_TYPE = "application/json"
MSGPACK_CONTENT_TYPE = "application/x-msgpack"

# Upper bounds checked before parsing (msgpack.unpackb sizes its own limits
# from the input length, so an explicit cap is what bounds memory). Ably frames
# are at most maxFrameSize (512 KiB); REST pages can hold 1000 messages.
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024

_JSON_TYPES = frozenset({JSON_CONTENT_TYPE, "text/json"})
_MSGPACK_TYPES = frozenset({MSGPACK_CONTENT_TYPE, "application/msgpack", "application/vnd.msgpack"})
_BINARY_TYPES = (bytes, bytearray, memoryview)
_FRAME_TYPES = (str, *_BINARY_TYPES)
_JSON_WHITESPACE = frozenset(b" \t\r\n")
_unpackb = msgpack.unpackb

# Compact and strict: no spaces, UTF-8 text rather than \u escapes, no NaN.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# Error previews of unknown bodies mask anything that looks like a token or key.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9+/=_.:-]{16,}")
_PREVIEW_BYTES = 64


def _error(message: str, cause: BaseException | None = None) -> EncodingError:
    return EncodingError(message, ErrorCode.INVALID_DATA_OR_ENCODING, 400, None, cause)


def content_type_for(binary: bool) -> str:
    """``Content-Type``/``Accept`` value for the chosen format (RSC8)."""
    return MSGPACK_CONTENT_TYPE if binary else JSON_CONTENT_TYPE


def _pack(obj: Any, what: str) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _error(f"cannot encode {what} as msgpack: {exc}", exc) from exc


def _dump_json(obj: Any, what: str) -> str:
    try:
        return _JSON_ENCODER.encode(obj)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise _error(f"cannot encode {what} as JSON: {exc}", exc) from exc


def encode_frame(pm: ProtocolMessage, *, binary: bool) -> bytes | str:
    """One frame: msgpack bytes (binary) or compact JSON text."""
    if binary:
        return _pack(pm.to_dict(binary=True), "protocol message")
    return _dump_json(pm.to_dict(binary=False), "protocol message")


def _looks_like_json(frame: bytes | bytearray | memoryview) -> bool:
    # A msgpack map never starts with "{" (0x7b is a positive fixint) nor with
    # whitespace, so this sniff cannot mistake a msgpack frame for JSON.
    if not frame:
        return False
    first = frame[0]
    if first == 0x7B:
        return True
    if first in _JSON_WHITESPACE:
        return bytes(frame).lstrip()[:1] == b"{"
    return False


def decode_frame(
    frame: bytes | bytearray | memoryview | str, *, binary: bool | None = None
) -> ProtocolMessage:
    """Parse one frame into a :class:`ProtocolMessage` (payloads left encoded).

    ``binary=None`` infers the format: text is JSON, bytes are msgpack unless
    they start like a JSON object. Raises only :class:`EncodingError` (40013).
    """
    if type(frame) is bytes and binary:  # the hot path: a msgpack frame from the reader
        if len(frame) > MAX_FRAME_BYTES:
            raise _error(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
        # (_parse_msgpack and _from_dict written out: two calls fewer per frame)
        try:
            raw = _unpackb(frame, raw=False)
        except Exception as exc:
            raise _parse_failed("msgpack", "frame", exc) from exc
        try:
            return ProtocolMessage.from_dict(raw)
        except EncodingError:
            raise
        except Exception as exc:
            raise _malformed(exc) from exc
    if not isinstance(frame, _FRAME_TYPES):
        raise _error(f"a frame must be bytes or text, not {type(frame).__name__}")
    size = len(frame)
    if size > MAX_FRAME_BYTES:
        raise _error(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    if isinstance(frame, str):
        if binary:
            raise _error("a msgpack frame must be bytes, not text")
        raw = _parse_json(frame, "frame")
    elif (binary is None and _looks_like_json(frame)) or binary is False:
        raw = _parse_json(frame, "frame")
    else:
        raw = _parse_msgpack(frame, "frame")
    return _from_dict(raw)


def _from_dict(raw: Any) -> ProtocolMessage:
    try:
        return ProtocolMessage.from_dict(raw)
    except EncodingError:
        raise
    except Exception as exc:
        raise _malformed(exc) from exc


def _malformed(exc: Exception) -> EncodingError:
    # Belt and braces: from_dict raises EncodingError for every shape problem it
    # knows; anything else from a hostile frame (e.g. an ErrorInfo code of 1e999)
    # must still reach the caller as an EncodingError.
    return _error(f"malformed protocol message: {type(exc).__name__}", exc)


def _parse_failed(kind: str, what: str, exc: Exception) -> EncodingError:
    return _error(f"malformed {kind} {what}: {type(exc).__name__}: {exc}"[:300], exc)


def _parse_json(data: bytes | bytearray | memoryview | str, what: str) -> Any:
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except Exception as exc:  # ValueError, RecursionError, UnicodeDecodeError...
        raise _parse_failed("JSON", what, exc) from exc


def _parse_msgpack(data: bytes | bytearray | memoryview, what: str) -> Any:
    try:
        return _unpackb(data, raw=False)
    except Exception as exc:
        # ValueError subclasses, OutOfData, TypeError for unhashable keys, and the
        # "other exceptions" msgpack documents: all mean "not a valid message".
        raise _parse_failed("msgpack", what, exc) from exc


def encode_body(obj: Any, *, binary: bool) -> bytes:
    """A REST request body (RSC8): msgpack, or UTF-8 compact JSON."""
    if binary:
        return _pack(obj, "request body")
    text = _dump_json(obj, "request body")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _error("request body holds a lone surrogate, not valid Unicode", exc) from exc


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def _preview(body: bytes) -> str:
    text = body[:_PREVIEW_BYTES].decode("utf-8", "replace")
    text = _SECRET_LIKE.sub("<redacted>", text)
    return text.encode("unicode_escape").decode("ascii")


def decode_body(body: bytes, content_type: str | None) -> Any:
    """Parse a REST response body by its ``Content-Type`` (RSC8d/RSC8e).

    JSON (``application/json``, ``*+json``) and msgpack
    (``application/x-msgpack``) are accepted whatever was requested. An empty
    body (204) is ``None``. Anything else raises :class:`EncodingError` 40013
    with a short, redacted preview.
    """
    if not body:
        return None
    size = len(body)
    if size > MAX_BODY_BYTES:
        raise _error(f"response body of {size} bytes exceeds the {MAX_BODY_BYTES} byte limit")
    media = _media_type(content_type)
    if media in _JSON_TYPES or media.endswith("+json"):
        return _parse_json(body, "response body")
    if media in _MSGPACK_TYPES:
        return _parse_msgpack(body, "response body")
    raise _error(
        f"unsupported response content type {media or 'none'!r} ({size} bytes, starting "
        f"{_preview(bytes(body))!r})"
    )
