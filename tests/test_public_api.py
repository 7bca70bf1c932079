"""The public API is importable from the package top level, and pinned."""

from __future__ import annotations

import ably_bridge

EXPECTED = {
    "AblyRealtime",
    "ChannelOptions",
    "ChannelState",
    "ChannelStateChange",
    "ConnectionState",
    "ConnectionStateChange",
    "AblyAuthException",
    "AblyException",
    "AblyRest",
    "Auth",
    "AuthenticationError",
    "ChannelCipher",
    "ChannelDetails",
    "ChannelMode",
    "CipherParams",
    "ClientOptions",
    "Clock",
    "ConnectionDetails",
    "EncodingError",
    "ErrorCode",
    "ErrorInfo",
    "FakeClock",
    "HttpPaginatedResponse",
    "Message",
    "MessageAction",
    "PaginatedResult",
    "PresenceAction",
    "PresenceMessage",
    "PublishResult",
    "Stats",
    "SystemClock",
    "TokenDetails",
    "TokenError",
    "TokenParams",
    "TokenRequest",
    "__version__",
    "generate_random_key",
    "get_cipher",
    "get_default_params",
}


def test_all_is_pinned() -> None:
    assert set(ably_bridge.__all__) == EXPECTED


def test_every_exported_name_resolves() -> None:
    for name in ably_bridge.__all__:
        assert getattr(ably_bridge, name) is not None, name


def test_official_ably_names_are_where_users_look() -> None:
    # Names shared with the official `ably` package, so code can move across.
    from ably_bridge import AblyException, CipherParams, Message, PresenceMessage

    assert callable(Message.from_encoded)
    assert callable(Message.from_encoded_array)
    assert callable(PresenceMessage.from_encoded)
    assert issubclass(AblyException, Exception)
    key = ably_bridge.generate_random_key()
    params = ably_bridge.get_default_params({"key": key})
    assert isinstance(params, CipherParams)
    assert params.key_length == 256
