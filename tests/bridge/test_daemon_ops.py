"""Operations pieces: Prometheus text, the health endpoint, JSON logs, discovery, REST backfill."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ably_bridge.bridge.backfill import RestHistory
from ably_bridge.bridge.checkpoint import Position
from ably_bridge.bridge.discovery import DiscoverySchedule, RestDirectory
from ably_bridge.bridge.health import HealthServer
from ably_bridge.bridge.jsonlog import JsonFormatter, configure_logging
from ably_bridge.bridge.metrics import BridgeMetrics, Counter, Gauge, Histogram, Registry
from ably_bridge.bridge.source import after_position
from ably_bridge.emulator import Emulator
from ably_bridge.protocol.models import Message
from ably_bridge.rest.client import AblyRest

# -- metrics ------------------------------------------------------------------


def test_prometheus_text_of_counters_gauges_and_histograms() -> None:
    reg = Registry()
    c = reg.register(Counter("x_total", "Xs.", ["kind"]))
    g = reg.register(Gauge("depth", "Depth."))
    h = reg.register(Histogram("lat_seconds", "Latency.", ["sink"], buckets=(0.1, 1.0)))
    c.inc(2, 'a"b')
    g.set(3.5)
    h.observe(0.05, "s")
    h.observe(0.5, "s")
    h.observe(5, "s")
    text = reg.render()
    assert "# TYPE x_total counter" in text
    assert 'x_total{kind="a\\"b"} 2' in text
    assert "depth 3.5" in text
    assert 'lat_seconds_bucket{sink="s",le="0.1"} 1' in text
    assert 'lat_seconds_bucket{sink="s",le="1"} 2' in text
    assert 'lat_seconds_bucket{sink="s",le="+Inf"} 3' in text
    assert 'lat_seconds_count{sink="s"} 3' in text
    assert 'lat_seconds_sum{sink="s"} 5.55' in text
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(1)  # missing label


def test_counter_set_total_never_goes_back() -> None:
    c = Counter("n_total", "N.")
    c.set_total(5)
    c.set_total(3)
    assert c.value() == 5
    assert "n_total 0" in Registry().register(Counter("n_total", "N.")).render()[0]


# -- health -------------------------------------------------------------------


@pytest.fixture
def health() -> Iterator[tuple[HealthServer, dict[str, Any]]]:
    state: dict[str, Any] = {"ready": (False, ["connection connecting"])}
    metrics = BridgeMetrics()
    metrics.received.inc(4, "message")
    server = HealthServer(
        "127.0.0.1",
        0,
        alive=lambda: (True, []),
        ready=lambda: state["ready"],
        metrics=metrics.render,
    ).start()
    yield server, state
    server.stop()


def test_health_endpoints(health: tuple[HealthServer, dict[str, Any]]) -> None:
    server, state = health
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    not_ready = requests.get(server.url + "/readyz", timeout=5)
    assert not_ready.status_code == 503
    assert not_ready.json() == {"ok": False, "problems": ["connection connecting"]}
    state["ready"] = (True, [])
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    metrics = requests.get(server.url + "/metrics", timeout=5)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'ably_bridge_events_received_total{source="message"} 4' in metrics.text
    assert requests.get(server.url + "/nope", timeout=5).status_code == 404


def test_a_failing_probe_answers_500(health: tuple[HealthServer, dict[str, Any]]) -> None:
    server, state = health
    state["ready"] = None  # not a tuple: the probe breaks
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 500
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


# -- logs ---------------------------------------------------------------------


def test_json_logs_carry_context_and_no_payload_by_default() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        log = logging.getLogger("ably_bridge.bridge.test")
        log.info("got %s", "it", extra={"channel": "ch", "message_id": "m1", "payload": "SECRET"})
        log.debug("hidden")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "got it" and lines[0]["channel"] == "ch"
    assert lines[0]["message_id"] == "m1" and "payload" not in lines[0]
    assert lines[0]["level"] == "INFO" and lines[0]["time"].endswith("Z")
    assert len(lines) == 2 and "ValueError: boom" in lines[1]["exc"]


def test_payloads_only_when_asked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.payload = {"data": 1}
    assert json.loads(JsonFormatter(payloads=True).format(record))["payload"] == {"data": 1}


# -- discovery schedule and positions -------------------------------------------


def test_discovery_schedule() -> None:
    sched = DiscoverySchedule([("a:", 10.0), ("b:", 5.0), ("a:", 3.0)], now=100.0)
    assert sorted(sched.due(100.0)) == ["a:", "b:"]
    assert sched.due(100.0) == []  # running
    assert sched.next_due(100.0) is None
    sched.done("a:", 101.0)
    assert sched.next_due(101.0) == 3.0
    assert sched.due(104.0) == ["a:"]


def test_after_position() -> None:
    pos = Position(timestamp=1000, id="m5", serial="0005")
    assert after_position(Message(id="m5", serial="0005", timestamp=1000), pos) is False
    assert after_position(Message(id="m6", serial="0006", timestamp=999), pos) is True
    assert after_position(Message(id="m4", serial="0004", timestamp=2000), pos) is False
    ts_only = Position(timestamp=1000, id="x")
    assert after_position(Message(id="y", timestamp=1000), ts_only) is True
    assert after_position(Message(id="y", timestamp=999), ts_only) is False
    assert after_position(Message(id="y"), ts_only) is None


# -- REST backfill and discovery against the emulator ------------------------


@pytest.fixture
def rest(emulator: Emulator) -> Iterator[AblyRest]:
    created = emulator.create_app({"keys": [{}]})
    client = AblyRest(
        key=created["keys"][0]["keyStr"], endpoint="127.0.0.1", port=emulator.port, tls=False,
        insecure_allow_basic_over_http=True,
    )  # fmt: skip
    yield client
    client.close()
    emulator.delete_app(created["appId"])


def test_rest_history_reads_the_gap_up_to_the_attach_point(rest: AblyRest) -> None:
    channel = rest.channels.get("hist")
    serials = []
    for i in range(25):
        serials += channel.publish("e", str(i), id=f"h{i}").serials
    history = RestHistory(rest, page_limit=7)
    checkpoint = Position(timestamp=0, id="h4", serial=serials[4])
    gap = history.since("hist", checkpoint, serials[19])
    assert [m.id for m in gap] == [f"h{i}" for i in range(5, 20)]
    assert gap[0].data == "5" and gap[0].serial == serials[5]
    everything = history.since("hist", None, None)
    assert [m.id for m in everything] == [f"h{i}" for i in range(25)]
    capped = RestHistory(rest, max_messages=3).since("hist", checkpoint, None)
    assert [m.id for m in capped] == ["h22", "h23", "h24"]


def test_rest_history_keeps_payloads_encoded(rest: AblyRest) -> None:
    rest.channels.get("enc").publish("e", {"a": 1}, id="j1")
    (msg,) = RestHistory(rest).since("enc", None, None)
    assert msg.encoding == "json" and msg.data == '{"a":1}'


def test_rest_directory_lists_active_channels_by_prefix(rest: AblyRest) -> None:
    for name in ("disc:a", "disc:b", "other"):
        rest.channels.get(name).publish("e", "x")
    directory = RestDirectory(rest, page_limit=1)
    assert sorted(directory.list_channels("disc:")) == ["disc:a", "disc:b"]
