"""The live summary: text and JSON lines, and reading the bridge's Prometheus metrics."""

from __future__ import annotations

import json

from ably_bridge.devstack.summary import Snapshot, format_json, format_text, parse_metrics


def _snapshot(**changes: object) -> Snapshot:
    fields: dict[str, object] = {
        "elapsed": 12.3,
        "published": 11,
        "publish_errors": 0,
        "presence_entered": True,
        "bridge_received": 12,
        "bridge_dead_letters": 0,
        "stream_key": "ably-dev:chat",
        "stream_length": 12,
        "celery_tasks": 12,
        "celery_by_source": {"presence": 1, "message": 11},
        "published_in_tasks": 11,
    }
    fields.update(changes)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_text_line_follows_the_flow() -> None:
    line = format_text(_snapshot())
    assert line == (
        "[  12s] published 11 +presence -> bridge received 12 -> stream ably-dev:chat 12 "
        "-> celery tasks 12 (message 11, presence 1); published ids handled 11/11"
    )


def test_text_line_marks_unknowns_errors_and_the_final_line() -> None:
    line = format_text(
        _snapshot(
            bridge_received=None,
            stream_length=None,
            celery_tasks=None,
            celery_by_source={},
            publish_errors=2,
            presence_entered=False,
            bridge_dead_letters=1,
            published_in_tasks=None,
            published_in_stream=None,
            final=True,
        )
    )
    assert line.startswith("[final] published 11 (2 failed) -> bridge received ?")
    assert "stream ably-dev:chat ? -> celery tasks ?" in line
    assert "dead letters 1" in line
    assert "published ids" not in line
    assert "+presence" not in line


def test_final_text_line_follows_the_published_ids() -> None:
    line = format_text(_snapshot(published_in_stream=11, published_in_tasks=10, final=True))
    assert line.startswith("[final] published 11")
    assert line.endswith("; published ids in the stream 11/11, handled 10/11")


def test_json_line_is_one_object_with_every_field() -> None:
    text = format_json(_snapshot(published_in_stream=11, final=True))
    assert "\n" not in text
    value = json.loads(text)
    assert value["event"] == "summary"
    assert value["final"] is True
    assert value["published"] == 11 and value["stream_length"] == 12
    assert value["celery_by_source"] == {"presence": 1, "message": 11}
    assert value["published_in_stream"] == 11 and value["published_in_tasks"] == 11


def test_parse_metrics_sums_each_metric_over_its_labels() -> None:
    text = "\n".join(
        [
            "# HELP ably_bridge_events_received_total Events received from Ably.",
            "# TYPE ably_bridge_events_received_total counter",
            'ably_bridge_events_received_total{source="message"} 10',
            'ably_bridge_events_received_total{source="presence"} 2',
            "ably_bridge_buffer_depth 0",
            'ably_bridge_delivery_latency_seconds_bucket{sink="x",le="+Inf"} 3',
            "garbage line without a number x",
            "",
        ]
    )
    metrics = parse_metrics(text)
    assert metrics["ably_bridge_events_received_total"] == 12
    assert metrics["ably_bridge_buffer_depth"] == 0
    assert metrics["ably_bridge_delivery_latency_seconds_bucket"] == 3
    assert "garbage" not in metrics
