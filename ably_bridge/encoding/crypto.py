"""Channel encryption: ``CipherParams`` and the AES-CBC ``ChannelCipher`` (RSE1, RSE2, RSL5).

This module owns the one cipher Ably defines for message payloads: AES in CBC
mode with PKCS#7 padding, a random 16-byte IV per message, and a ciphertext
payload laid out as ``IV || ciphertext`` (RSL5b, encryption.md). Key length is
always derived from the key (128 or 256 bits). Only ``data`` is ever encrypted;
the payload layer (:mod:`ably_bridge.encoding.payload`) decides when.

Keys never appear in a repr or in an error message.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from Crypto.Cipher import AES

from ably_bridge.errors import AblyException, EncodingError, ErrorCode

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_KEY_LENGTH",
    "ChannelCipher",
    "CipherParams",
    "default_cipher_params",
    "generate_random_key",
    "get_cipher",
    "get_default_params",
]

BLOCK_SIZE = 16  # AES block and IV size in bytes
# RSE2a: generateRandomKey defaults to 256 bits (encryption.md says 128; the
# spec and ably-js use 256, and key length is always derived from the key anyway).
DEFAULT_KEY_LENGTH = 256
_KEY_LENGTHS = frozenset({128, 256})


def _bad_params(message: str) -> AblyException:
    return AblyException(message, ErrorCode.BAD_REQUEST, 400)


def _decode_key_text(text: str, what: str) -> bytes:
    """Bytes of a base64 or base64url string (padding optional); never echoes the text."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_params(f"cipher {what} is not valid base64 or base64url") from exc


def _as_bytes(value: bytes | bytearray | memoryview | str, what: str) -> bytes:
    if isinstance(value, str):
        return _decode_key_text(value, what)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _bad_params(f"cipher {what} must be bytes or a base64 string, not {type(value).__name__}")


@dataclass(frozen=True, slots=True, repr=False)
class CipherParams:
    """Algorithm, mode, key and (for tests only) a fixed IV (RSE1, TZ2).

    ``key_length`` is derived from ``key`` in bits and must be 128 or 256.
    A fixed ``iv`` makes encryption deterministic, which fixtures need; never
    set it in production (reusing an IV leaks equality of message prefixes).
    """

    key: bytes = field(repr=False)
    algorithm: str = "aes"
    mode: str = "cbc"
    iv: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, str) or not isinstance(self.mode, str):
            raise _bad_params("cipher algorithm and mode must be strings")
        algorithm = self.algorithm.lower()
        mode = self.mode.lower()
        if algorithm != "aes":
            raise _bad_params(f"unsupported cipher algorithm {self.algorithm!r}; only 'aes'")
        if mode != "cbc":
            raise _bad_params(f"unsupported cipher mode {self.mode!r}; only 'cbc'")
        if not isinstance(self.key, bytes):
            raise _bad_params("CipherParams.key must be bytes; use get_default_params for text")
        bits = len(self.key) * 8
        if bits not in _KEY_LENGTHS:
            raise _bad_params(f"unsupported cipher key length {bits} bits; use 128 or 256")
        if self.iv is not None and (not isinstance(self.iv, bytes) or len(self.iv) != BLOCK_SIZE):
            raise _bad_params(f"cipher iv must be {BLOCK_SIZE} bytes")
        # The official ably package spells these upper case; keep one spelling.
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "mode", mode)

    def __repr__(self) -> str:
        iv = "fixed" if self.iv is not None else "random"
        return f"CipherParams(cipher_type={self.cipher_type!r}, iv={iv})"

    @property
    def key_length(self) -> int:
        """Key length in bits (128 or 256)."""
        return len(self.key) * 8

    @property
    def secret_key(self) -> bytes:
        """The key, under the name the official ``ably`` package uses."""
        return self.key

    @property
    def cipher_type(self) -> str:
        """E.g. ``"aes-256-cbc"``."""
        return f"{self.algorithm}-{self.key_length}-{self.mode}"


def get_default_params(
    params: Mapping[str, Any] | None = None,
    *,
    key: bytes | bytearray | str | None = None,
    algorithm: str = "aes",
    mode: str = "cbc",
    iv: bytes | str | None = None,
) -> CipherParams:
    """Build ``CipherParams`` with defaults filled in (RSE1).

    Accepts the official package's dict style (``{"key": ..., "algorithm": ...,
    "iv": ...}``) or keywords. ``key`` (and ``iv``) may be bytes or a base64 /
    base64url string. A ``keyLength``/``key_length`` entry, if given, must match
    the key. Raises :class:`AblyException` 40000 on anything invalid.
    """
    key_length: Any = None
    if params is not None:
        if not isinstance(params, Mapping):
            raise _bad_params("cipher params must be a mapping")
        key = params.get("key", key)
        algorithm = params.get("algorithm", algorithm)
        mode = params.get("mode", mode)
        iv = params.get("iv", iv)
        key_length = params.get("keyLength", params.get("key_length"))
    if key is None:
        raise _bad_params("a cipher key is required")
    key_bytes = _as_bytes(key, "key")
    iv_bytes = None if iv is None else _as_bytes(iv, "iv")
    result = CipherParams(key=key_bytes, algorithm=algorithm, mode=mode, iv=iv_bytes)
    if key_length is not None and key_length != result.key_length:
        raise _bad_params(
            f"cipher keyLength {key_length} does not match the key ({result.key_length} bits)"
        )
    return result


def generate_random_key(length: int = DEFAULT_KEY_LENGTH) -> bytes:
    """A random AES key of ``length`` bits, 128 or 256 (RSE2)."""
    if length not in _KEY_LENGTHS:
        raise _bad_params(f"unsupported cipher key length {length} bits; use 128 or 256")
    return secrets.token_bytes(length // 8)


def default_cipher_params(key_length: int = DEFAULT_KEY_LENGTH) -> CipherParams:
    """CipherParams with a new random key, AES-CBC, in one call (Go's ``DefaultCipherParams``)."""
    return get_default_params(key=generate_random_key(key_length))


class ChannelCipher:
    """Encrypts and decrypts payload bytes with one ``CipherParams`` (RSL5, RSE1).

    Stateless apart from the params, so one instance can serve many threads.
    """

    __slots__ = ("_encoding_token", "_params")

    def __init__(self, params: CipherParams) -> None:
        if not isinstance(params, CipherParams):
            raise _bad_params("ChannelCipher needs CipherParams; see get_cipher()")
        self._params = params
        self._encoding_token = f"cipher+{params.cipher_type}"

    @property
    def params(self) -> CipherParams:
        return self._params

    @property
    def cipher_type(self) -> str:
        """E.g. ``"aes-128-cbc"``."""
        return self._params.cipher_type

    @property
    def encoding_token(self) -> str:
        """The step this cipher adds to ``encoding``, e.g. ``"cipher+aes-256-cbc"`` (RSL5c)."""
        return self._encoding_token

    def encrypt(self, plaintext: bytes) -> bytes:
        """``IV || AES-CBC(PKCS#7(plaintext))`` with a fresh random IV unless params fix one."""
        iv = self._params.iv or secrets.token_bytes(BLOCK_SIZE)
        pad = BLOCK_SIZE - len(plaintext) % BLOCK_SIZE  # always pads, 16 when aligned
        padded = bytes(plaintext) + bytes((pad,)) * pad
        return iv + AES.new(self._params.key, AES.MODE_CBC, iv).encrypt(padded)

    def decrypt(self, payload: bytes) -> bytes:
        """Undo :meth:`encrypt`; raises :class:`EncodingError` 40013 on bad length or padding.

        A wrong key almost always shows up as bad padding; it cannot be told
        apart from corrupted ciphertext, so the error says both.
        """
        size = len(payload)
        if size < 2 * BLOCK_SIZE or size % BLOCK_SIZE:
            raise EncodingError(
                f"cannot decrypt {self.cipher_type} payload: {size} bytes is not an IV plus "
                "whole blocks",
                ErrorCode.INVALID_DATA_OR_ENCODING,
                400,
            )
        view = memoryview(payload)
        plain = AES.new(self._params.key, AES.MODE_CBC, view[:BLOCK_SIZE]).decrypt(
            view[BLOCK_SIZE:]
        )
        pad = plain[-1]
        if not 1 <= pad <= BLOCK_SIZE or plain[-pad:] != bytes((pad,)) * pad:
            raise EncodingError(
                f"cannot decrypt {self.cipher_type} payload: bad padding (wrong key or "
                "corrupted data)",
                ErrorCode.INVALID_DATA_OR_ENCODING,
                400,
            )
        return plain[:-pad]

    def __repr__(self) -> str:
        return f"ChannelCipher(cipher_type={self.cipher_type!r})"


def get_cipher(params: CipherParams | Mapping[str, Any] | bytes | bytearray | str) -> ChannelCipher:
    """A :class:`ChannelCipher` from params, a params dict, or a bare key (bytes or base64)."""
    if isinstance(params, CipherParams):
        return ChannelCipher(params)
    if isinstance(params, Mapping):
        return ChannelCipher(get_default_params(params))
    return ChannelCipher(get_default_params(key=params))
