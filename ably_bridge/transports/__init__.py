"""Transports: the only code that touches the network.

HTTP lives in :mod:`.http` (``requests``) with a scripted stand-in in
:mod:`.mock_http`; the websocket transport lives beside them.
"""

from ably_bridge.transports.http import (
    Headers,
    HttpResponse,
    HttpTransport,
    HttpTransportError,
    RequestsTransport,
    Timeout,
)
from ably_bridge.transports.mock_http import MockHttpTransport, RecordedRequest

__all__ = [
    "Headers",
    "HttpResponse",
    "HttpTransport",
    "HttpTransportError",
    "MockHttpTransport",
    "RecordedRequest",
    "RequestsTransport",
    "Timeout",
]
