"""Typed stats in both wire forms, and typed channel occupancy (TS3-TS12, CHO, CHM)."""

from __future__ import annotations

from ably_bridge.protocol.stats import ChannelDetails, ChannelStatus, Stats
from ably_bridge.protocol.stats_types import (
    ChannelMetrics,
    StatsMessageCount,
    StatsPushTransportTypeCounter,
    StatsRequestCount,
    StatsResourceCount,
)

# The current form, as ably-js 2.x reads it (schema app-stats-0.0.5 names).
CURRENT = {
    "intervalId": "2024-05-06:07:08",
    "unit": "minute",
    "schema": "https://schemas.ably.com/json/app-stats-0.0.5.json",
    "appId": "app1",
    "inProgress": "2024-05-06:07:08:30",
    "entries": {
        "messages.all.all.count": 12,
        "messages.all.all.data": 1200,
        "messages.all.messages.billableCount": 10,
        "messages.inbound.all.messages.count": 7,
        "messages.inbound.realtime.messages.count": 4,
        "messages.inbound.rest.messages.count": 3,
        "messages.inbound.realtime.presence.uncompressedData": 99,
        "messages.outbound.webhook.all.refused": 1,
        "messages.outbound.externalQueue.messages.count": 2,
        "messages.persisted.presence.count": 5,
        "connections.all.peak": 20,
        "connections.tls.opened": 8,
        "channels.peak": 3,
        "channels.mean": 1.5,
        "apiRequests.all.succeeded": 50,
        "apiRequests.all.failed": 2,
        "apiRequests.tokenRequests.succeeded": 6,
        "apiRequests.tokenRequests.refused": 1,
        "push.channelMessages": 4,
        "push.directPublishes": 2,
        "push.notifications.all.total": 9,
        "push.notifications.delivered.apns": 5,
        "push.notifications.refused.retriable.fcm": 1,
        "push.notifications.refused.final.total": 3,
        "messages.processed.delta.xdelta.succeeded": 11,
    },
}

# The same numbers in the older nested form (X-Ably-Version 2; Go's JSON shape).
OLDER = {
    "intervalId": "2024-05-06:07:08",
    "unit": "minute",
    "count": 1,
    "all": {"all": {"count": 12, "data": 1200}, "messages": {"billableCount": 10}},
    "inbound": {
        "all": {"messages": {"count": 7}},
        "realtime": {"messages": {"count": 4}, "presence": {"uncompressedData": 99}},
        "rest": {"messages": {"count": 3}},
    },
    "outbound": {
        "webhook": {"all": {"refused": 1}},
        "externalQueue": {"messages": {"count": 2}},
    },
    "persisted": {"presence": {"count": 5}},
    "connections": {"all": {"peak": 20}, "tls": {"opened": 8}},
    "channels": {"peak": 3, "mean": 1.5},
    "apiRequests": {"succeeded": 50, "failed": 2},
    "tokenRequests": {"succeeded": 6, "refused": 1},
    "push": {
        "messages": 4,
        "directPublishes": 2,
        "notifications": {
            "invalid": 1,
            "attempted": {"total": 9},
            "successful": {"apns": 5},
            "failed": {"retriable": {"fcm": 1}, "final": {"total": 3}},
        },
    },
    "xchgProducer": {
        "all": {"messages": {"count": 2}},
        "producerPaid": {"inbound": {"realtime": {"all": {"count": 3}}}},
    },
    "xchgConsumer": {"consumerPaid": {"outbound": {"rest": {"messages": {"data": 7}}}}},
    "peakRates": {"messages": 2.5, "apiRequests": 1, "tokenRequests": 0.5, "reactor": {"amqp": 3}},
}


def _common(stats: Stats) -> None:
    """What both forms must give for the same numbers."""
    assert stats.all.all == StatsMessageCount(count=12, data=1200)
    assert stats.all.messages.billable_count == 10
    assert stats.inbound.all.messages.count == 7  # what ably-js 2.x reads
    assert stats.inbound.realtime.messages.count == 4
    assert stats.inbound.rest.messages.count == 3
    assert stats.inbound.realtime.presence.uncompressed_data == 99
    assert stats.outbound.webhook.all.refused == 1
    assert stats.outbound.external_queue.messages.count == 2
    assert stats.outbound.realtime.all == StatsMessageCount()  # absent: zeros
    assert stats.persisted.presence.count == 5
    assert stats.connections.all.peak == 20 and stats.connections.tls.opened == 8
    assert stats.connections.plain == StatsResourceCount()
    assert stats.channels == StatsResourceCount(peak=3, mean=1.5)
    assert stats.api_requests == StatsRequestCount(succeeded=50, failed=2)
    assert stats.token_requests == StatsRequestCount(succeeded=6, refused=1)
    push = stats.push
    assert (push.messages, push.direct_publishes) == (4, 2)
    assert push.notifications.attempted.total == 9
    assert push.notifications.successful == StatsPushTransportTypeCounter(apns=5)
    assert push.notifications.failed.retriable.fcm == 1
    assert push.notifications.failed.final.total == 3


def test_current_form() -> None:
    stats = Stats.from_dict(CURRENT)
    _common(stats)
    assert (stats.schema, stats.app_id, stats.in_progress) == (
        CURRENT["schema"],
        "app1",
        "2024-05-06:07:08:30",
    )
    assert stats.push.notifications.invalid == 0  # no such entry in the current form
    assert stats.peak_rates.messages == 0 and stats.count == 0
    assert stats.entries["messages.processed.delta.xdelta.succeeded"] == 11  # untyped: kept
    assert stats.raw == CURRENT  # the item as received


def test_older_nested_form() -> None:
    stats = Stats.from_dict(OLDER)
    _common(stats)
    assert stats.push.notifications.invalid == 1
    assert stats.count == 1
    assert stats.xchg_producer.all.messages.count == 2
    assert stats.xchg_producer.producer_paid.inbound.realtime.all.count == 3
    assert stats.xchg_consumer.consumer_paid.outbound.rest.messages.data == 7
    rates = stats.peak_rates
    assert (rates.messages, rates.api_requests, rates.token_requests) == (2.5, 1, 0.5)
    assert (rates.reactor.amqp, rates.reactor.http_event) == (3, 0)
    assert stats.raw["tokenRequests"] == {"succeeded": 6, "refused": 1}


def test_typed_views_follow_the_entries() -> None:
    stats = Stats(entries={"channels.peak": 1})
    assert stats.channels.peak == 1
    stats.entries["channels.peak"] = 4
    assert stats.channels.peak == 4  # views, not copies
    assert Stats().inbound.all.all.count == 0
    assert Stats.from_dict(CURRENT) == Stats.from_dict(Stats.from_dict(CURRENT).to_dict())


def test_typed_channel_occupancy() -> None:
    raw = {
        "channelId": "ch",
        "status": {
            "isActive": True,
            "occupancy": {
                "metrics": {
                    "connections": 3,
                    "presenceConnections": 2,
                    "presenceMembers": 1,
                    "presenceSubscribers": 2,
                    "publishers": 1,
                    "subscribers": 3,
                    "objectPublishers": 0,
                    "objectSubscribers": 1,
                    "futureMetric": 7,
                }
            },
        },
    }
    status = ChannelDetails.from_dict(raw).status
    metrics = status.occupancy.metrics
    assert metrics == ChannelMetrics(
        connections=3,
        presence_connections=2,
        presence_members=1,
        presence_subscribers=2,
        publishers=1,
        subscribers=3,
        object_publishers=0,
        object_subscribers=1,
    )
    assert metrics.raw["futureMetric"] == 7 and status.metrics["futureMetric"] == 7
    assert ChannelStatus().occupancy.metrics == ChannelMetrics()
