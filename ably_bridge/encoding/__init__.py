"""Payload encoding (RSL4/RSL6) and AES-CBC channel encryption (RSE, RSL5); no I/O."""

from ably_bridge.encoding.crypto import (
    ChannelCipher,
    CipherParams,
    default_cipher_params,
    generate_random_key,
    get_cipher,
    get_default_params,
)
from ably_bridge.encoding.payload import DecodeResult, decode_data, encode_data

__all__ = [
    "ChannelCipher",
    "CipherParams",
    "DecodeResult",
    "decode_data",
    "default_cipher_params",
    "encode_data",
    "generate_random_key",
    "get_cipher",
    "get_default_params",
]
