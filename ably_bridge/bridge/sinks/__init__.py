"""Sinks: where bridged events go (Redis Streams, Celery, memory), registered by URL scheme."""

from ably_bridge.bridge.sinks.base import (
    Delivery,
    MemorySink,
    Outcome,
    Result,
    Sink,
    SinkError,
    SinkOptions,
    create_sink,
    register_sink,
)

__all__ = [
    "Delivery",
    "MemorySink",
    "Outcome",
    "Result",
    "Sink",
    "SinkError",
    "SinkOptions",
    "create_sink",
    "register_sink",
]
