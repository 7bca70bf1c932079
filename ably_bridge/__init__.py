"""ably-bridge: a synchronous Ably client, a bridge into Celery and Redis, and an emulator.

The names below are the public API; everything else is reachable through its
module (``ably_bridge.rest``, ``ably_bridge.protocol``, ...) but may change.
"""

from ably_bridge.clock import Clock, FakeClock, SystemClock
from ably_bridge.encoding import (
    ChannelCipher,
    CipherParams,
    generate_random_key,
    get_cipher,
    get_default_params,
)
from ably_bridge.errors import (
    AblyAuthException,
    AblyException,
    AuthenticationError,
    EncodingError,
    ErrorCode,
    TokenError,
)
from ably_bridge.options import ClientOptions
from ably_bridge.protocol import (
    ChannelDetails,
    ChannelMode,
    ConnectionDetails,
    ErrorInfo,
    Message,
    MessageAction,
    PresenceAction,
    PresenceMessage,
    Stats,
    TokenDetails,
    TokenParams,
    TokenRequest,
)
from ably_bridge.realtime import (
    AblyRealtime,
    ChannelOptions,
    ChannelState,
    ChannelStateChange,
    ConnectionState,
    ConnectionStateChange,
)
from ably_bridge.rest import (
    AblyRest,
    Auth,
    HttpPaginatedResponse,
    PaginatedResult,
    PublishResult,
)

__version__ = "0.1.0"

__all__ = [
    "AblyAuthException",
    "AblyException",
    "AblyRealtime",
    "AblyRest",
    "Auth",
    "AuthenticationError",
    "ChannelCipher",
    "ChannelDetails",
    "ChannelMode",
    "ChannelOptions",
    "ChannelState",
    "ChannelStateChange",
    "CipherParams",
    "ClientOptions",
    "Clock",
    "ConnectionDetails",
    "ConnectionState",
    "ConnectionStateChange",
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
]
