"""Hot-path shortcuts keep their output: envelope JSON, batched metrics."""

from __future__ import annotations

from ably_bridge.bridge.config import StreamTarget
from ably_bridge.bridge.dedup import stream_dedup_field
from ably_bridge.bridge.metrics import BridgeMetrics, Histogram, MeteredSink
from ably_bridge.bridge.sinks.base import Delivery, MemorySink
from ably_bridge.clock import FakeClock
from ably_bridge.envelope import EnvelopeBuilder, dumps
from ably_bridge.protocol.models import Message, PresenceMessage


def test_envelope_json_is_the_json_of_its_dict() -> None:
    b = EnvelopeBuilder('app"x', "sité\u2028")
    channel = 'ch:"é"\\\n'
    envs = [
        b.message(channel, Message("n", "d", id="a:1:0", timestamp=5), "r"),
        b.message(channel, Message(None, {"a": [1, "é"]}, id="b", timestamp=None), "r", now_ms=9),
        b.message(channel, Message("n", b"\x00\x01", id="c", timestamp=7), "r2", mode="encoded"),
        b.presence(channel, PresenceMessage(action=2, client_id="x", id="p", timestamp=3), "r"),
        b.lifecycle(channel, "attached", "r", now_ms=1),
    ]
    for env in envs:
        assert env.to_json() == dumps(env.to_dict())
        # The dedup window's key and the streams sink's mark are the one text.
        assert env.route_key == stream_dedup_field(env.rule_id, env.dedup_key)


def test_histogram_observe_many_matches_observe() -> None:
    one, many = Histogram("h", "x", ["s"]), Histogram("h", "x", ["s"])
    values = [0.0, 0.001, 0.0011, 0.005, 0.05, 0.07, 61.0, 100.0, 0.0025]
    for v in values:
        one.observe(v, "a")
    many.observe_many(values, "a")
    assert one.render() == many.render()
    assert many.count("a") == len(values)


def test_metered_sink_counts_a_batch() -> None:
    metrics = BridgeMetrics()
    clock = FakeClock()
    sink = MeteredSink(MemorySink(), "memory", metrics, clock)
    b = EnvelopeBuilder("app", "site")
    now = clock.time_ms()
    envs = [
        b.message("c", Message("n", "d", id=f"c:{i}:0", timestamp=now - 20), "r") for i in range(3)
    ]
    target = StreamTarget(key="s")
    sink.deliver([Delivery(e, target) for e in envs])
    sink.deliver([Delivery(envs[0], target)])  # a duplicate
    assert metrics.delivered.value("memory", "delivered") == 3
    assert metrics.delivered.value("memory", "duplicate") == 1
    assert metrics.latency.count("memory") == 3
    text = metrics.render()
    assert 'ably_bridge_delivery_latency_seconds_bucket{sink="memory",le="0.025"} 3' in text
