"""ably-bridge: a synchronous Ably client, a bridge into Celery and Redis, and an emulator."""

from ably_bridge.clock import Clock, FakeClock, SystemClock
from ably_bridge.errors import (
    AblyAuthException,
    AblyException,
    AuthenticationError,
    EncodingError,
    ErrorCode,
    TokenError,
)

__version__ = "0.1.0"

__all__ = [
    "AblyAuthException",
    "AblyException",
    "AuthenticationError",
    "Clock",
    "EncodingError",
    "ErrorCode",
    "FakeClock",
    "SystemClock",
    "TokenError",
    "__version__",
]
