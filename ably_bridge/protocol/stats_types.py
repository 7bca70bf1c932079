"""Typed views of app statistics (TS3-TS12) and channel occupancy (CHO, CHM), as in the Go SDK.

:class:`~.stats.Stats` keeps every metric in ``entries``, a flat dict of
dotted names. This module reads that dict into the Go SDK's typed shape
(``stats.inbound.realtime.messages.count``, ``stats.connections.all.peak``,
``stats.api_requests.succeeded``...) whichever wire form it came from:

* the current form (protocol v3+, ably-js 2.x): ``entries`` keys such as
  ``messages.inbound.all.messages.count``, ``apiRequests.all.succeeded``,
  ``apiRequests.tokenRequests.refused``, ``push.notifications.delivered.total``;
* the older nested form (protocol v2, the sandbox's ``POST /stats``), which
  :class:`~.stats.Stats` flattens to ``inbound.all.messages.count``,
  ``apiRequests.succeeded``, ``tokenRequests.refused``,
  ``push.notifications.successful.total``.

Each field names the keys it reads, current form first; a metric absent from
both reads 0. The current form's extras (``billableCount``,
``uncompressedData``, ``objects``) have fields too; anything else is still in
``entries`` (and the item as received in ``Stats.raw``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChannelMetrics",
    "ChannelOccupancy",
    "PushStats",
    "StatsConnectionTypes",
    "StatsMessageCount",
    "StatsMessageDirections",
    "StatsMessageTraffic",
    "StatsMessageTypes",
    "StatsPushNotificationFailures",
    "StatsPushNotifications",
    "StatsPushTransportTypeCounter",
    "StatsRates",
    "StatsReactorRates",
    "StatsRequestCount",
    "StatsResourceCount",
    "StatsView",
    "StatsXchgMessages",
]

Number = int | float
_Prefixes = Sequence[str]


@dataclass(frozen=True, slots=True)
class StatsMessageCount:
    """Messages and bytes (TS5): ``count``, ``data``, and the failures."""

    count: Number = 0
    data: Number = 0
    uncompressed_data: Number = 0
    billable_count: Number = 0
    failed: Number = 0
    refused: Number = 0


@dataclass(frozen=True, slots=True)
class StatsMessageTypes:
    """By message type (TS6): ``all``, ``messages``, ``presence`` (and ``objects``)."""

    all: StatsMessageCount = field(default_factory=StatsMessageCount)
    messages: StatsMessageCount = field(default_factory=StatsMessageCount)
    presence: StatsMessageCount = field(default_factory=StatsMessageCount)
    objects: StatsMessageCount = field(default_factory=StatsMessageCount)


@dataclass(frozen=True, slots=True)
class StatsMessageTraffic:
    """By transport (TS7): realtime, REST, webhooks, queues, push, HTTP events, and all."""

    all: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    realtime: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    rest: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    webhook: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    push: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    external_queue: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    shared_queue: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    http_event: StatsMessageTypes = field(default_factory=StatsMessageTypes)


@dataclass(frozen=True, slots=True)
class StatsResourceCount:
    """A resource's usage (TS9): peak, min, mean, opened, failed, refused."""

    peak: Number = 0
    min: Number = 0
    mean: Number = 0
    opened: Number = 0
    failed: Number = 0
    refused: Number = 0


@dataclass(frozen=True, slots=True)
class StatsConnectionTypes:
    """Connections (TS4): all, plain (non-TLS) and TLS."""

    all: StatsResourceCount = field(default_factory=StatsResourceCount)
    plain: StatsResourceCount = field(default_factory=StatsResourceCount)
    tls: StatsResourceCount = field(default_factory=StatsResourceCount)


@dataclass(frozen=True, slots=True)
class StatsRequestCount:
    """Requests (TS8): succeeded, failed, refused."""

    succeeded: Number = 0
    failed: Number = 0
    refused: Number = 0


@dataclass(frozen=True, slots=True)
class StatsPushTransportTypeCounter:
    """Push notifications by transport: total, gcm, fcm, apns, web."""

    total: Number = 0
    gcm: Number = 0
    fcm: Number = 0
    apns: Number = 0
    web: Number = 0


@dataclass(frozen=True, slots=True)
class StatsPushNotificationFailures:
    """Failed push notifications: retriable and final."""

    retriable: StatsPushTransportTypeCounter = field(default_factory=StatsPushTransportTypeCounter)
    final: StatsPushTransportTypeCounter = field(default_factory=StatsPushTransportTypeCounter)


@dataclass(frozen=True, slots=True)
class StatsPushNotifications:
    """Push notifications (TS10c): attempted, successful, failed, invalid.

    In the current form ``attempted`` is ``all``, ``successful`` is
    ``delivered`` and ``failed`` is ``refused``.
    """

    invalid: Number = 0
    attempted: StatsPushTransportTypeCounter = field(default_factory=StatsPushTransportTypeCounter)
    successful: StatsPushTransportTypeCounter = field(default_factory=StatsPushTransportTypeCounter)
    failed: StatsPushNotificationFailures = field(default_factory=StatsPushNotificationFailures)


@dataclass(frozen=True, slots=True)
class PushStats:
    """Push (TS10): channel messages, notifications, direct publishes."""

    messages: Number = 0
    notifications: StatsPushNotifications = field(default_factory=StatsPushNotifications)
    direct_publishes: Number = 0


@dataclass(frozen=True, slots=True)
class StatsMessageDirections:
    """Messages by direction (TS14): all, inbound, outbound."""

    all: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    inbound: StatsMessageTraffic = field(default_factory=StatsMessageTraffic)
    outbound: StatsMessageTraffic = field(default_factory=StatsMessageTraffic)


@dataclass(frozen=True, slots=True)
class StatsXchgMessages:
    """API Streamer usage (TS11): all, producer-paid, consumer-paid."""

    all: StatsMessageTypes = field(default_factory=StatsMessageTypes)
    producer_paid: StatsMessageDirections = field(default_factory=StatsMessageDirections)
    consumer_paid: StatsMessageDirections = field(default_factory=StatsMessageDirections)


@dataclass(frozen=True, slots=True)
class StatsReactorRates:
    """Peak reactor rates: HTTP events and AMQP."""

    http_event: Number = 0
    amqp: Number = 0


@dataclass(frozen=True, slots=True)
class StatsRates:
    """Peak rates: messages, API requests, token requests, reactor."""

    messages: Number = 0
    api_requests: Number = 0
    token_requests: Number = 0
    reactor: StatsReactorRates = field(default_factory=StatsReactorRates)


class StatsView:
    """Reads the typed shapes out of a flat ``entries`` dict; see the module docstring."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, Number]) -> None:
        self._entries = entries

    def num(self, *keys: str) -> Number:
        """The first of ``keys`` present, else 0."""
        for key in keys:
            value = self._entries.get(key)
            if value is not None:
                return value
        return 0

    def _leaf(self, prefixes: _Prefixes, leaf: str) -> Number:
        return self.num(*(f"{prefix}.{leaf}" for prefix in prefixes))

    @staticmethod
    def _under(prefixes: _Prefixes, name: str) -> list[str]:
        return [f"{prefix}.{name}" for prefix in prefixes]

    def message_count(self, prefixes: _Prefixes) -> StatsMessageCount:
        leaf = self._leaf
        return StatsMessageCount(
            count=leaf(prefixes, "count"),
            data=leaf(prefixes, "data"),
            uncompressed_data=leaf(prefixes, "uncompressedData"),
            billable_count=leaf(prefixes, "billableCount"),
            failed=leaf(prefixes, "failed"),
            refused=leaf(prefixes, "refused"),
        )

    def message_types(self, prefixes: _Prefixes) -> StatsMessageTypes:
        under = self._under
        return StatsMessageTypes(
            all=self.message_count(under(prefixes, "all")),
            messages=self.message_count(under(prefixes, "messages")),
            presence=self.message_count(under(prefixes, "presence")),
            objects=self.message_count(under(prefixes, "objects")),
        )

    def message_traffic(self, prefixes: _Prefixes) -> StatsMessageTraffic:
        def types(name: str) -> StatsMessageTypes:
            return self.message_types(self._under(prefixes, name))

        return StatsMessageTraffic(
            all=types("all"),
            realtime=types("realtime"),
            rest=types("rest"),
            webhook=types("webhook"),
            push=types("push"),
            external_queue=types("externalQueue"),
            shared_queue=types("sharedQueue"),
            http_event=types("httpEvent"),
        )

    def message_directions(self, prefixes: _Prefixes) -> StatsMessageDirections:
        under = self._under
        return StatsMessageDirections(
            all=self.message_types(under(prefixes, "all")),
            inbound=self.message_traffic(under(prefixes, "inbound")),
            outbound=self.message_traffic(under(prefixes, "outbound")),
        )

    def resource_count(self, prefixes: _Prefixes) -> StatsResourceCount:
        leaf = self._leaf
        return StatsResourceCount(
            peak=leaf(prefixes, "peak"),
            min=leaf(prefixes, "min"),
            mean=leaf(prefixes, "mean"),
            opened=leaf(prefixes, "opened"),
            failed=leaf(prefixes, "failed"),
            refused=leaf(prefixes, "refused"),
        )

    def request_count(self, prefixes: _Prefixes) -> StatsRequestCount:
        leaf = self._leaf
        return StatsRequestCount(
            succeeded=leaf(prefixes, "succeeded"),
            failed=leaf(prefixes, "failed"),
            refused=leaf(prefixes, "refused"),
        )

    def push_counter(self, prefixes: _Prefixes) -> StatsPushTransportTypeCounter:
        leaf = self._leaf
        return StatsPushTransportTypeCounter(
            total=leaf(prefixes, "total"),
            gcm=leaf(prefixes, "gcm"),
            fcm=leaf(prefixes, "fcm"),
            apns=leaf(prefixes, "apns"),
            web=leaf(prefixes, "web"),
        )

    def push(self) -> PushStats:
        base = "push.notifications"
        notifications = StatsPushNotifications(
            invalid=self.num(f"{base}.invalid"),
            attempted=self.push_counter((f"{base}.all", f"{base}.attempted")),
            successful=self.push_counter((f"{base}.delivered", f"{base}.successful")),
            failed=StatsPushNotificationFailures(
                retriable=self.push_counter(
                    (f"{base}.refused.retriable", f"{base}.failed.retriable")
                ),
                final=self.push_counter((f"{base}.refused.final", f"{base}.failed.final")),
            ),
        )
        return PushStats(
            messages=self.num("push.channelMessages", "push.messages"),
            notifications=notifications,
            direct_publishes=self.num("push.directPublishes"),
        )

    def xchg(self, prefix: str) -> StatsXchgMessages:
        return StatsXchgMessages(
            all=self.message_types((f"{prefix}.all",)),
            producer_paid=self.message_directions((f"{prefix}.producerPaid",)),
            consumer_paid=self.message_directions((f"{prefix}.consumerPaid",)),
        )

    def rates(self) -> StatsRates:
        return StatsRates(
            messages=self.num("peakRates.messages"),
            api_requests=self.num("peakRates.apiRequests"),
            token_requests=self.num("peakRates.tokenRequests"),
            reactor=StatsReactorRates(
                http_event=self.num("peakRates.reactor.httpEvent"),
                amqp=self.num("peakRates.reactor.amqp"),
            ),
        )


_METRIC_NAMES = (
    ("connections", "connections"),
    ("presence_connections", "presenceConnections"),
    ("presence_members", "presenceMembers"),
    ("presence_subscribers", "presenceSubscribers"),
    ("publishers", "publishers"),
    ("subscribers", "subscribers"),
    ("object_publishers", "objectPublishers"),
    ("object_subscribers", "objectSubscribers"),
)


@dataclass(frozen=True, slots=True)
class ChannelMetrics:
    """A channel's occupancy counts (CHM2); ``raw`` keeps every metric by its wire name."""

    connections: int = 0
    presence_connections: int = 0
    presence_members: int = 0
    presence_subscribers: int = 0
    publishers: int = 0
    subscribers: int = 0
    object_publishers: int = 0
    object_subscribers: int = 0
    raw: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, int]) -> ChannelMetrics:
        """From the wire-named ``metrics`` dict (already checked to hold ints)."""
        values: dict[str, Any] = {name: metrics.get(wire, 0) for name, wire in _METRIC_NAMES}
        return cls(**values, raw=dict(metrics))


@dataclass(frozen=True, slots=True)
class ChannelOccupancy:
    """A channel's occupancy (CHO2): its :class:`ChannelMetrics`."""

    metrics: ChannelMetrics = field(default_factory=ChannelMetrics)
