"""CipherParams, key handling and the AES-CBC ChannelCipher (RSE1, RSE2, RSL5)."""

from __future__ import annotations

import base64

import pytest

from ably_bridge.encoding.crypto import (
    BLOCK_SIZE,
    ChannelCipher,
    CipherParams,
    default_cipher_params,
    generate_random_key,
    get_cipher,
    get_default_params,
)
from ably_bridge.errors import AblyException, EncodingError

KEY_128 = bytes(range(16))
KEY_256 = bytes(range(32))
IV = bytes(range(100, 116))


@pytest.mark.parametrize(("key", "bits"), [(KEY_128, 128), (KEY_256, 256)])
def test_key_length_and_cipher_type_come_from_the_key(key: bytes, bits: int) -> None:
    params = CipherParams(key=key)
    assert params.key_length == bits
    assert params.cipher_type == f"aes-{bits}-cbc"
    assert params.secret_key == key
    cipher = get_cipher(params)
    assert cipher.cipher_type == f"aes-{bits}-cbc"
    assert cipher.encoding_token == f"cipher+aes-{bits}-cbc"
    assert cipher.params is params


@pytest.mark.parametrize("size", [0, 8, 24, 33])
def test_bad_key_lengths_are_named_in_the_error(size: int) -> None:
    with pytest.raises(AblyException) as caught:
        CipherParams(key=b"k" * size)
    assert caught.value.code == 40000
    assert f"{size * 8} bits" in caught.value.message


def test_upper_case_algorithm_and_mode_are_normalised() -> None:
    params = CipherParams(key=KEY_128, algorithm="AES", mode="CBC")
    assert (params.algorithm, params.mode) == ("aes", "cbc")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "des"},
        {"mode": "gcm"},
        {"algorithm": 3},
        {"iv": b"short"},
        {"iv": "not-bytes"},
    ],
)
def test_invalid_params_raise_40000(kwargs: dict[str, object]) -> None:
    with pytest.raises(AblyException) as caught:
        CipherParams(key=KEY_128, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == 40000


def test_text_key_must_go_through_get_default_params() -> None:
    with pytest.raises(AblyException, match="get_default_params"):
        CipherParams(key="WUP6u0K7MXI5Zeo0VppPwg==")  # type: ignore[arg-type]


def test_repr_never_shows_the_key() -> None:
    params = CipherParams(key=KEY_256, iv=IV)
    for text in (repr(params), str(params), repr(ChannelCipher(params))):
        assert KEY_256.hex() not in text
        assert repr(KEY_256) not in text
        assert base64.b64encode(KEY_256).decode() not in text
    assert "aes-256-cbc" in repr(params)
    assert "fixed" in repr(params)
    assert "random" in repr(CipherParams(key=KEY_128))


def test_get_default_params_dict_style_of_the_official_package() -> None:
    b64 = base64.b64encode(KEY_128).decode()
    params = get_default_params({"key": b64, "algorithm": "AES", "iv": IV})
    assert params.key == KEY_128
    assert params.iv == IV
    assert params.algorithm == "aes"
    assert get_default_params({"key": KEY_256, "keyLength": 256}).key_length == 256
    assert get_default_params({"key": KEY_256, "key_length": 256}).key_length == 256


def test_get_default_params_keyword_style_and_text_keys() -> None:
    assert get_default_params(key=KEY_256).key == KEY_256
    assert get_default_params(key=bytearray(KEY_128)).key == KEY_128
    b64url = base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode().rstrip("=")
    assert get_default_params(key=b64url).key == b"\xfb\xff" * 8
    iv_text = base64.b64encode(IV).decode()
    assert get_default_params(key=KEY_128, iv=iv_text).iv == IV


def test_bad_text_key_error_does_not_echo_the_key() -> None:
    secret = "this is not base64 but very secret!"
    with pytest.raises(AblyException) as caught:
        get_default_params(key=secret)
    assert caught.value.code == 40000
    assert secret not in str(caught.value)
    assert "base64" in caught.value.message


@pytest.mark.parametrize(
    ("params", "kwargs", "fragment"),
    [
        (None, {}, "required"),
        ({"key": KEY_128, "keyLength": 256}, {}, "does not match"),
        (["key"], {}, "mapping"),
        (None, {"key": 12345}, "must be bytes"),
    ],
)
def test_get_default_params_errors(
    params: object, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(AblyException) as caught:
        get_default_params(params, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == 40000
    assert fragment in caught.value.message


def test_generate_random_key() -> None:
    assert len(generate_random_key()) == 32
    assert len(generate_random_key(128)) == 16
    assert len(generate_random_key(256)) == 32
    assert generate_random_key() != generate_random_key()
    with pytest.raises(AblyException) as caught:
        generate_random_key(192)
    assert caught.value.code == 40000


def test_get_cipher_accepts_params_dict_bytes_and_text() -> None:
    text = base64.b64encode(KEY_128).decode()
    for source in (CipherParams(key=KEY_128), {"key": KEY_128}, KEY_128, text):
        assert get_cipher(source).params.key == KEY_128
    with pytest.raises(AblyException):
        ChannelCipher({"key": KEY_128})  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 1000])
@pytest.mark.parametrize("key", [KEY_128, KEY_256])
def test_encrypt_decrypt_round_trip_and_layout(size: int, key: bytes) -> None:
    cipher = get_cipher(key)
    plain = bytes(i % 251 for i in range(size))
    payload = cipher.encrypt(plain)
    # IV || ciphertext; PKCS#7 always pads, a full block when already aligned.
    assert len(payload) == BLOCK_SIZE + (size // BLOCK_SIZE + 1) * BLOCK_SIZE
    assert cipher.decrypt(payload) == plain


def test_random_iv_per_message_unless_fixed() -> None:
    random_iv = get_cipher(KEY_128)
    first, second = random_iv.encrypt(b"same"), random_iv.encrypt(b"same")
    assert first[:BLOCK_SIZE] != second[:BLOCK_SIZE]
    assert first != second
    fixed = get_cipher(CipherParams(key=KEY_128, iv=IV))
    assert fixed.encrypt(b"same") == fixed.encrypt(b"same")
    assert fixed.encrypt(b"same")[:BLOCK_SIZE] == IV


@pytest.mark.parametrize("size", [0, 16, 31, 33, 47])
def test_decrypt_rejects_wrong_lengths(size: int) -> None:
    with pytest.raises(EncodingError) as caught:
        get_cipher(KEY_128).decrypt(b"\x00" * size)
    assert caught.value.code == 40013
    assert f"{size} bytes" in caught.value.message


def test_decrypt_with_the_wrong_key_is_a_padding_error() -> None:
    payload = get_cipher(CipherParams(key=KEY_128, iv=IV)).encrypt(b"The quick brown fox")
    wrong = get_cipher(bytes(16))
    with pytest.raises(EncodingError) as caught:
        wrong.decrypt(payload)
    assert caught.value.code == 40013
    assert "padding" in caught.value.message
    assert KEY_128.hex() not in str(caught.value)


def test_decrypt_rejects_padding_byte_zero_and_inconsistent_padding() -> None:
    from Crypto.Cipher import AES

    for block in (b"A" * 15 + b"\x00", b"A" * 13 + b"\x01\x02\x03", b"A" * 15 + b"\x11"):
        payload = IV + AES.new(KEY_128, AES.MODE_CBC, IV).encrypt(block)
        with pytest.raises(EncodingError):
            get_cipher(KEY_128).decrypt(payload)


def test_default_cipher_params_in_one_call() -> None:
    params = default_cipher_params()
    assert (params.algorithm, params.mode, params.key_length) == ("aes", "cbc", 256)
    assert params.key != default_cipher_params().key  # a new random key each time
    assert default_cipher_params(128).key_length == 128
    cipher = get_cipher(params)
    assert cipher.decrypt(cipher.encrypt(b"secret payload")) == b"secret payload"
    with pytest.raises(AblyException):
        default_cipher_params(64)
