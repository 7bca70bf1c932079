"""The status model on the fake source: what /status says, filters, pages, schema.

No sockets or threads: the daemon is driven by a FakeSource and a FakeClock
(tests/bridge/test_daemon.py's rig); the document is built as the health
server builds it and validated against docs/status.schema.json.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ably_bridge.bridge.sinks.base import MemorySink, Outcome, Result
from ably_bridge.bridge.status import BridgeStatus, StatusSources
from ably_bridge.bridge.status_history import RateHistory, RecentErrors, quantile
from ably_bridge.bridge.status_query import (
    MAX_LIMIT,
    QueryError,
    StatusQuery,
    decode_cursor,
    encode_cursor,
    parse_query,
)
from tests.bridge.daemon_fakes import make_config
from tests.bridge.status_support import schema, validate
from tests.bridge.test_daemon import Rig, make_rig, publish


def status_of(rig: Rig, **extra: Any) -> BridgeStatus:
    daemon = rig.daemon
    return BridgeStatus(
        StatusSources(
            config=lambda: daemon.config,
            daemon=daemon,
            dispatcher=daemon.dispatcher,
            sink_for=rig.pool.peek,
            ready=daemon.readiness,
            connections=lambda: [(0, daemon.source.connection_state(), len(daemon.tracks), 0.0)],
            connection_errors=dict,
            monotonic=rig.clock.monotonic,
            time_ms=rig.clock.time_ms,
            **extra,
        )
    )


def many_channels(n: int) -> Rig:
    config = make_config(
        routes=[
            {
                "id": "r1",
                "channels": [f"ch{i:05d}" for i in range(n)],
                "targets": [{"type": "redis_stream", "key": "s:{channel}"}],
            },
            {
                "id": "odd",
                "channels": [f"ch{i:05d}" for i in range(1, n, 2)],
                "targets": [{"type": "redis_stream", "key": "odd:{channel}"}],
            },
        ],
        delivery={"buffer_size": 100_000},
    )
    rig = make_rig(config)
    rig.daemon.start()
    rig.settle()
    return rig


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(schema())


def test_a_delivered_message_shows_as_the_channels_last_delivered_event() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    (last,) = publish(rig, "ch1", 1)
    rig.settle()
    doc = status_of(rig).build(StatusQuery())
    validate(doc)
    assert doc["totals"]["phases"]["live"] == 2
    delivered = doc["totals"]["delivered"]  # the message and the channels' lifecycle events
    assert delivered == len(rig.sink.records) >= 3
    by_name = {c["name"]: c for c in doc["channels"]["items"]}
    (route,) = by_name["ch1"]["routes"]
    assert route["id"] == "r1" and route["last_delivered"]["id"] == last
    assert route["last_delivered"]["settled_at"] == rig.clock.time_ms()
    assert by_name["ch2"]["routes"][0]["last_delivered"] is None
    (target,) = doc["routes"][0]["targets"]
    assert target["outcomes"] == {"delivered": delivered} and target["last_error"] is None
    assert target["destination"] == {"stream": "s:{channel}"}
    assert doc["attention"] == []


def test_a_failing_sink_shows_its_error_buffered_events_lag_and_attention() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    sink = rig.sink

    def refuse(batch: Any) -> list[Result]:
        return [Result(Outcome.RETRY, error=ConnectionError("redis://u:pw@h/0 is down"))
                for _ in batch]  # fmt: skip

    sink.deliver = refuse  # type: ignore[method-assign]
    publish(rig, "ch2", 3)
    rig.daemon.step()
    rig.clock.advance(12.0)
    doc = status_of(rig).build(StatusQuery(state="attention"))
    validate(doc)
    (target,) = doc["routes"][0]["targets"]
    assert target["outcomes"]["retry"] >= 1
    assert "ConnectionError" in target["last_error"]["message"]
    assert "pw" not in target["last_error"]["message"]  # redacted
    assert doc["routes"][0]["buffered_events"] == 3
    assert doc["routes"][0]["checkpoint_lag_seconds"] >= 12.0
    assert [c["name"] for c in doc["attention"]] == ["ch2"]  # live, but 12 s behind
    assert [c["name"] for c in doc["channels"]["items"]] == ["ch2"]
    assert doc["channels"]["items"][0]["routes"][0]["buffered_events"] == 3
    assert doc["process"]["ready"] is False


def test_a_paused_channel_comes_first_in_attention() -> None:
    rig = make_rig()
    rig.daemon.start()
    rig.settle()
    rig.daemon._pause(rig.daemon.tracks["ch1"], "test")  # what a full buffer does
    doc = status_of(rig).build(StatusQuery(state="paused"))
    validate(doc)
    assert [c["name"] for c in doc["attention"]] == ["ch1"]
    assert doc["attention"][0]["phase"] == "paused"
    assert [c["name"] for c in doc["channels"]["items"]] == ["ch1"]
    assert doc["totals"]["phases"]["paused"] == 1


def test_pages_cover_every_channel_once_in_name_order_with_filters() -> None:
    rig = many_channels(1_500)
    status = status_of(rig)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        doc = status.build(StatusQuery(limit=97, after=cursor and decode_cursor(cursor)))
        validate(doc)
        seen.extend(c["name"] for c in doc["channels"]["items"])
        assert doc["channels"]["total"] == 1_500
        cursor = doc["channels"]["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 1_500
    odd = status.build(StatusQuery(route="odd", limit=MAX_LIMIT))
    assert odd["channels"]["total"] == 750
    assert all(int(c["name"][2:]) % 2 == 1 for c in odd["channels"]["items"])
    assert {r["id"] for r in odd["channels"]["items"][0]["routes"]} == {"r1", "odd"}
    assert [r["channels"] for r in odd["routes"]] == [1_500, 750]
    assert status.build(StatusQuery(state="failed"))["channels"] == {
        "total": 0,
        "filter": {"route": None, "state": "failed", "limit": 100},
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("query", "code", "needle"),
    [
        ("limit=0", 40003, "limit"),
        ("limit=1001", 40003, "limit"),
        ("limit=%D9%A3", 40003, "limit"),  # an Arabic-Indic digit is not a limit
        ("state=asleep", 40003, "state"),
        ("route=nope", 40003, "no route"),
        ("cursor=%%%", 40003, "cursor"),
        ("cursor=_w", 40003, "cursor"),  # base64 of a byte that is not UTF-8
        ("sort=name", 40002, "unknown parameter"),
        ("limit=5&limit=6", 40003, "more than once"),
        ("route=%FF", 40003, "UTF-8"),
    ],
)
def test_a_bad_query_is_a_clear_error(query: str, code: int, needle: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query, ("r1",))
    assert caught.value.code == code and caught.value.status == 400
    assert needle in caught.value.message


def test_a_good_query_parses() -> None:
    cursor = encode_cursor("caf\u00e9 <b>")
    assert decode_cursor(cursor) == "caf\u00e9 <b>"
    assert parse_query(f"route=r1&state=attention&limit=7&cursor={cursor}", ("r1",)) == (
        StatusQuery(route="r1", state="attention", limit=7, after="caf\u00e9 <b>")
    )
    assert parse_query("", ("r1",)) == StatusQuery()


def test_history_samples_rates_and_latency_quantiles() -> None:
    rig = make_rig()
    history = RateHistory(rig.daemon.metrics, interval=5.0, clock=rig.clock)
    assert history.sample() is None  # the starting point
    metrics = rig.daemon.metrics
    metrics.received.inc(50, "message")
    metrics.delivered.inc(40, "s", "delivered")
    metrics.latency.observe_many([0.004] * 30 + [0.2] * 10, "s")
    rig.clock.advance(5.0)
    sample = history.sample()
    assert sample is not None
    assert sample.received_per_s == pytest.approx(10.0)
    assert sample.delivered_per_s == pytest.approx(8.0)
    assert sample.latency_p50 == 0.005 and sample.latency_p95 == 0.25
    rig.clock.advance(5.0)
    quiet = history.sample()
    assert quiet is not None and quiet.latency_p50 is None and quiet.received_per_s == 0
    doc = status_of(rig, history=history.samples).build(StatusQuery())
    validate(doc)
    assert [h["received_per_s"] for h in doc["history"]] == [10.0, 0.0]
    assert quantile([0, 0, 5], (1.0, 2.0), 0.5) == 2.0  # past the last bound: that bound


def test_recent_errors_are_redacted_and_newest_first() -> None:
    import logging

    recent = RecentErrors(keep=2)
    log = logging.getLogger("ably_bridge.test_status")
    recent.install("ably_bridge.test_status")
    try:
        log.info("not kept")
        log.warning("first")
        log.error("sink redis://user:hunter2@host:6379/0 refused")
        log.error("third <script>")
    finally:
        recent.uninstall("ably_bridge.test_status")
    lines = recent.lines()
    assert lines[0]["message"].startswith("sink redis://")
    assert "hunter2" not in lines[0]["message"]
    assert len(lines) == 2
    rig = make_rig()
    doc = status_of(rig, recent_errors=recent.lines).build(StatusQuery())
    validate(doc)
    assert doc["recent_errors"][0]["message"] == "third <script>"


def test_a_sink_that_raises_is_counted_as_an_error() -> None:
    from ably_bridge.bridge.metrics import BridgeMetrics, MeteredSink

    class Broken(MemorySink):
        def deliver(self, batch: Any) -> list[Result]:
            raise OSError("amqp://guest:sesame@rabbit// unreachable")

    sink = MeteredSink(Broken(), "broken", BridgeMetrics())
    with pytest.raises(OSError, match="unreachable"):
        sink.deliver([])
    assert sink.last_error is not None and "sesame" not in sink.last_error[0]
