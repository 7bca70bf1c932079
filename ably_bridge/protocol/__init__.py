"""Sans-I/O protocol core: wire enums, the message model, stats and the JSON/msgpack codec.

Nothing here touches a socket, a thread or a clock; see docs/architecture.md ("The client").
"""

from ably_bridge.protocol.actions import (
    MODE_MASK,
    Action,
    ChannelMode,
    Flag,
    MessageAction,
    PresenceAction,
    modes_from_flags,
    modes_to_flags,
)
from ably_bridge.protocol.codec import (
    JSON_CONTENT_TYPE,
    MSGPACK_CONTENT_TYPE,
    content_type_for,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
)
from ably_bridge.protocol.models import (
    ConnectionDetails,
    ErrorInfo,
    Message,
    PresenceMessage,
    ProtocolMessage,
)
from ably_bridge.protocol.stats import ChannelDetails, ChannelStatus, Stats
from ably_bridge.protocol.stats_types import ChannelMetrics, ChannelOccupancy
from ably_bridge.protocol.tokens import (
    TokenDetails,
    TokenParams,
    TokenRequest,
    canonical_capability,
)

__all__ = [
    "JSON_CONTENT_TYPE",
    "MODE_MASK",
    "MSGPACK_CONTENT_TYPE",
    "Action",
    "ChannelDetails",
    "ChannelMetrics",
    "ChannelMode",
    "ChannelOccupancy",
    "ChannelStatus",
    "ConnectionDetails",
    "ErrorInfo",
    "Flag",
    "Message",
    "MessageAction",
    "PresenceAction",
    "PresenceMessage",
    "ProtocolMessage",
    "Stats",
    "TokenDetails",
    "TokenParams",
    "TokenRequest",
    "canonical_capability",
    "content_type_for",
    "decode_body",
    "decode_frame",
    "encode_body",
    "encode_frame",
    "modes_from_flags",
    "modes_to_flags",
]
