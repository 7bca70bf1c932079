"""Payload encoding chain for ``data`` fields: RSL4 on the way out, RSL6 on the way in.

This module owns the transforms named in a message's ``encoding`` (``json``,
``utf-8``, ``cipher+aes-<bits>-cbc``, ``base64``), applied left to right when
publishing and undone right to left when receiving. It works on Message,
PresenceMessage and annotation payloads alike.

Two boundaries are deliberate:

* :func:`encode_data` does **not** do the JSON-transport ``base64`` step; that
  depends on the wire format and belongs to ``to_dict(binary=False)``.
* :func:`decode_data` **never raises**: a step it cannot undo stops the walk and
  the caller gets the data as far as it got, the encoding still to undo, and an
  error to log (RSL6b).

The ``json`` step is a payload transform, not a wire format, so this module
calls :mod:`json` itself; frames and REST bodies go through
:mod:`ably_bridge.protocol.codec`.

``vcdiff`` (deltas, PC3) is undone only with a :class:`DeltaContext`, the
realtime channel's state: the user's decoder (``ClientOptions.vcdiff_decoder``,
without one 40019) applies the delta to the base payload, and the context's
base becomes the payload after the transport's ``base64`` step or, for a
delta, right after the ``vcdiff`` step (RTL19b/c). A delta that cannot be
applied is 40018.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ably_bridge.errors import AblyException, EncodingError, ErrorCode

if TYPE_CHECKING:
    from ably_bridge.encoding.crypto import ChannelCipher, CipherParams

    CipherArg = ChannelCipher | CipherParams | None

__all__ = [
    "DecodeResult",
    "DeltaContext",
    "VCDiffDecoder",
    "append_encoding",
    "decode_data",
    "encode_data",
    "json_text",
    "transport_payload",
    "undo_delta",
]

_BINARY_TYPES = (bytes, bytearray, memoryview)

# One shared encoder: compact (the fixtures and other SDKs emit no spaces), UTF-8
# text rather than \u escapes, and strict JSON (NaN/Infinity are not JSON).
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class VCDiffDecoder(Protocol):
    """Applies a VCDIFF delta (RFC 3284) to a base payload, e.g. ``vcdiff_decoder.decode``
    from the ``vcdiff-decoder`` package wrapped as ``decode(delta, base)``."""

    def decode(self, delta: bytes, base: bytes) -> bytes: ...


@dataclass(slots=True)
class DeltaContext:
    """A realtime channel's delta state (RTL19, RTL20).

    ``base``: the payload the next delta applies to; ``last_id``: the id of the
    message it came from; ``frame_serial``: the channelSerial of the last frame
    whose messages were all decoded (where a recovery re-attaches from, RTL18c).
    """

    decoder: VCDiffDecoder | None
    base: bytes | str | None = None
    last_id: str | None = None
    frame_serial: str | None = None


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """Outcome of :func:`decode_data`.

    ``data`` is decoded as far as possible; ``encoding`` is what is left to undo
    (``None`` when fully decoded); ``error`` says why decoding stopped early.
    """

    data: Any
    encoding: str | None
    error: AblyException | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _invalid(
    message: str,
    code: int = ErrorCode.INVALID_DATA_OR_ENCODING,
    cause: BaseException | None = None,
) -> EncodingError:
    return EncodingError(message, code, 400, None, cause)


def append_encoding(encoding: str | None, step: str) -> str:
    """``encoding`` with ``step`` applied after it (RSL4: left = first applied)."""
    return f"{encoding}/{step}" if encoding else step


def json_text(value: Any) -> str:
    """Compact JSON text of ``value``; :class:`EncodingError` 40013 if it is not JSON-able."""
    try:
        return _JSON_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _invalid(f"data cannot be encoded as JSON: {exc}") from exc


def encode_data(
    data: Any, encoding: str | None, cipher: CipherArg
) -> tuple[str | bytes | None, str | None]:
    """Apply RSL4 to ``data``: returns ``(wire_data, encoding)``.

    * ``None`` stays ``None``; ``str`` stays ``str``; binary becomes ``bytes``.
    * ``dict``/``list`` become JSON text with ``json`` appended (RSL4c3).
    * With a cipher (RSL5): text is UTF-8 encoded (``utf-8`` appended), then the
      bytes are encrypted and ``cipher+aes-<bits>-cbc`` appended (RSL5c).
    * An existing user ``encoding`` is kept and extended (RSL4).

    Anything else raises :class:`EncodingError` 40013 (RSL4a).
    """
    cipher = _as_cipher(cipher)
    plain: bytes
    if data is None:
        return None, encoding
    if isinstance(data, str):
        if cipher is None:
            return data, encoding
        try:
            plain = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid("string data is not valid Unicode (lone surrogate)") from exc
        encoding = append_encoding(encoding, "utf-8")
    elif isinstance(data, _BINARY_TYPES):
        plain = data if type(data) is bytes else bytes(data)
        if cipher is None:
            return plain, encoding
    elif isinstance(data, (dict, list)):
        text = json_text(data)
        encoding = append_encoding(encoding, "json")
        if cipher is None:
            return text, encoding
        try:
            plain = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid("JSON data is not valid Unicode (lone surrogate)") from exc
        encoding = append_encoding(encoding, "utf-8")
    else:
        # RSL4a: only string, binary, JSON object/array (or nothing) may be sent.
        raise _invalid(f"unsupported data type {type(data).__name__}; use str, bytes, dict or list")
    return cipher.encrypt(plain), append_encoding(encoding, cipher.encoding_token)


def _undo_base64(data: Any) -> bytes:
    # protocol.md: base64 may arrive with line feeds (MIME style); strip them, then
    # decode strictly so garbage is reported instead of silently skipped.
    if isinstance(data, str):
        if "\n" in data or "\r" in data:
            data = data.replace("\r", "").replace("\n", "")
        return base64.b64decode(data, validate=True)
    if isinstance(data, _BINARY_TYPES):
        raw = bytes(data)
        if b"\n" in raw or b"\r" in raw:
            raw = raw.replace(b"\r", b"").replace(b"\n", b"")
        return base64.b64decode(raw, validate=True)
    raise TypeError(f"base64 data must be text or bytes, not {type(data).__name__}")


def _undo_utf8(data: Any) -> str:
    if isinstance(data, str):  # already text (e.g. a JSON transport that skipped base64)
        return data
    if isinstance(data, _BINARY_TYPES):
        return str(data, "utf-8")
    raise TypeError(f"utf-8 data must be bytes, not {type(data).__name__}")


def _undo_json(data: Any) -> Any:
    if isinstance(data, (str, bytes, bytearray)):
        return json.loads(data)
    if isinstance(data, memoryview):
        return json.loads(bytes(data))
    raise TypeError(f"json data must be text, not {type(data).__name__}")


def _undo_cipher(data: Any, step: str, cipher: ChannelCipher | None) -> bytes:
    if cipher is None:
        raise _invalid(f"data is encrypted ({step}) but no cipher is configured for the channel")
    if step != cipher.encoding_token:
        raise _invalid(
            f"data is encrypted with {step[len('cipher+') :]} but the channel cipher is "
            f"{cipher.cipher_type}"
        )
    if not isinstance(data, _BINARY_TYPES):
        raise TypeError(f"encrypted data must be bytes, not {type(data).__name__}")
    return cipher.decrypt(bytes(data))


def _as_cipher(cipher: CipherArg) -> ChannelCipher | None:
    """A ChannelCipher from the cipher or the CipherParams callers hold (the official API)."""
    from ably_bridge.encoding.crypto import ChannelCipher, get_cipher

    if cipher is None or isinstance(cipher, ChannelCipher):
        return cipher
    return get_cipher(cipher)


def decode_data(
    data: Any, encoding: str | None, cipher: CipherArg, delta: DeltaContext | None = None
) -> DecodeResult:
    """Undo ``encoding`` right to left (RSL6a); never raises (RSL6b).

    Stops at the first step that cannot be undone - an unknown or unsupported
    step (40013), ``vcdiff`` without a decoder (40019) or a delta that cannot be
    applied (40018), a missing or mismatched cipher, a wrong key, bad
    base64/UTF-8/JSON - and returns the data as it was before that step, the
    encoding still to undo and the error. With ``delta``, a payload decoded to
    the end becomes its base (module docstring).
    """
    if not encoding or data is None:
        # No payload means nothing to undo; an encoding without data describes nothing.
        if delta is not None:
            delta.base = data  # RTL19b
        return DecodeResult(data, None, None)
    cipher = _as_cipher(cipher)
    steps = encoding.split("/")
    base = data  # RTL19: the payload as published: after transport base64 / vcdiff
    outermost = True
    while steps:
        step = steps[-1]
        try:
            if not step:
                pass  # "a//b" or a trailing "/": an empty step transforms nothing
            elif step == "base64":
                data = _undo_base64(data)
                if outermost:
                    base = data
            elif step == "utf-8":
                data = _undo_utf8(data)
            elif step == "json":
                data = _undo_json(data)
            elif step.startswith("cipher+"):
                data = _undo_cipher(data, step, cipher)
            elif step == "vcdiff":
                data = base = _undo_vcdiff(data, delta)  # PC3, RTL19c
            else:
                raise _invalid(f"unsupported encoding step {step!r}")
        except AblyException as exc:
            return DecodeResult(data, "/".join(steps), exc)
        except (ValueError, TypeError, RecursionError) as exc:
            # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors.
            error = _invalid(f"cannot undo encoding step {step!r}: {exc}", cause=exc)
            return DecodeResult(data, "/".join(steps), error)
        outermost = False
        steps.pop()
    if delta is not None:
        delta.base = base
    return DecodeResult(data, None, None)


def undo_delta(data: Any, encoding: str, delta: DeltaContext) -> DecodeResult:
    """Undo only a delta's transport ``base64`` and its ``vcdiff`` step (for payloads
    delivered still encoded): the payload as it would have arrived whole, with the
    rest of its encoding, and the new base (RTL19c). Never raises."""
    steps = encoding.split("/")
    try:
        if len(steps) >= 2 and steps[-1] == "base64" and steps[-2] == "vcdiff":
            data = _undo_base64(data)
            steps.pop()
        if steps[-1] != "vcdiff":
            raise _invalid(
                f"a delta must be undone first, not after {steps[-1]!r}",
                ErrorCode.DELTA_DECODING_FAILED,
            )
        data = _undo_vcdiff(data, delta)
        steps.pop()
    except AblyException as exc:
        return DecodeResult(data, "/".join(steps), exc)
    except (ValueError, TypeError) as exc:
        error = _invalid(
            f"cannot undo a delta's base64: {exc}", ErrorCode.DELTA_DECODING_FAILED, exc
        )
        return DecodeResult(data, "/".join(steps), error)
    delta.base = data
    return DecodeResult(data, "/".join(steps) or None, None)


def transport_payload(data: Any, encoding: str | None) -> Any:
    """``data`` after the transport's ``base64``, if it has one: the base a whole
    message delivered still encoded leaves for the next delta (RTL19b)."""
    if encoding is None or not encoding.endswith("base64"):
        return data
    try:
        return _undo_base64(data)
    except (ValueError, TypeError):
        return data  # (not base64 after all: a delta on it will fail and recover)


def _undo_vcdiff(data: Any, delta: DeltaContext | None) -> bytes:
    if delta is None or delta.decoder is None:
        raise _invalid(
            "vcdiff deltas need a decoder (ClientOptions.vcdiff_decoder)", ErrorCode.MISSING_PLUGIN
        )
    base = delta.base
    if base is None:
        raise _invalid(
            "a vcdiff delta arrived with no base payload", ErrorCode.DELTA_DECODING_FAILED
        )
    if not isinstance(data, _BINARY_TYPES):
        raise _invalid("a vcdiff delta must be binary", ErrorCode.DELTA_DECODING_FAILED)
    source = base.encode("utf-8") if isinstance(base, str) else bytes(base)
    try:
        return bytes(delta.decoder.decode(bytes(data), source))
    except Exception as exc:  # whatever the user's decoder raises: the delta is unusable
        raise _invalid(
            f"vcdiff delta could not be applied: {type(exc).__name__}",
            ErrorCode.DELTA_DECODING_FAILED,
            cause=exc,
        ) from exc
