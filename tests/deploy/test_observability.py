"""deploy/grafana/ably-bridge.json and deploy/prometheus/alerts.yaml: they parse, they are
well formed, and every metric (and label) they name is one the bridge exports.

The exported names come from the bridge's own registry
(:class:`~ably_bridge.bridge.metrics.BridgeMetrics`, what ``/metrics`` renders).
The alert rules are checked by ``promtool check rules`` and unit-tested by
``promtool test rules deploy/prometheus/alerts.test.yaml`` (Debian's
``prometheus`` package provides promtool); the dashboard's queries are checked
as PromQL by promtool too. Without promtool those tests skip, and the schema
checks here still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ably_bridge.bridge.metrics import BridgeMetrics
from tests.deploy.helpers import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "ably-bridge.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"

# Series Prometheus makes itself (not the bridge's): allowed by name.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}  # added by the scrape
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "or", "and", "unless", "on", "ignoring", "vector", "bool", "offset",
    "humanize", "humanizeDuration", "topk", "bottomk", "abs", "clamp_min", "time",
}  # fmt: skip
SEVERITIES = {"critical", "warning", "info"}
# What issue 19 asks alerts for: each must exist.
REQUIRED_ALERTS = {
    "AblyBridgeDown",
    "AblyBridgeNotReady",
    "AblyBridgeCheckpointLagHigh",
    "AblyBridgeDeadLetters",
    "AblyBridgeSinkFailing",
    "AblyBridgeShardLeaseLost",
}
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


# -- what the bridge exports ----------------------------------------------------------------
def exported() -> dict[str, set[str]]:
    """Every series name the bridge exports -> its label names (histograms expanded)."""
    metrics = BridgeMetrics()
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        name = getattr(value, "name", None)
        kind = getattr(value, "kind", None)
        if not isinstance(name, str) or kind is None:
            continue
        labels = set(value.label_names)
        if kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            found[name] = labels
    return found


def test_the_registry_is_what_metrics_renders() -> None:
    """The names read above are the ones ``/metrics`` declares (``# TYPE`` lines)."""
    text = BridgeMetrics().render()
    declared = {line.split()[2]: line.split()[3] for line in text.splitlines()
                if line.startswith("# TYPE ")}  # fmt: skip
    names = exported()
    expanded = {
        n + s if kind == "histogram" else n
        for n, kind in declared.items()
        for s in (HISTOGRAM_SUFFIXES if kind == "histogram" else ("",))
    }
    assert expanded == set(names)
    assert len(names) > 15


# -- the files ------------------------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def alerts() -> dict[str, Any]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    out = []
    for panel in dashboard_panels():
        out += [t["expr"] for t in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable.get("type") == "query":  # label_values(metric, label), as PromQL
            found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
            assert found, variable["definition"]
            out.append(f"count by ({found[2]}) ({found[1]})")
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in alerts()["groups"] for rule in group["rules"]]


def test_test_series_cover_real_metrics_only() -> None:
    """The alert unit tests feed series by the bridge's names too (a renamed metric fails)."""
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    series = [s["series"] for t in tests["tests"] for s in t["input_series"]]
    problems = [p for s in series for p in _problems(s, exported())]
    assert not problems


# -- metric names ---------------------------------------------------------------------------
def _promql_only(expr: str) -> str:
    """``expr`` without its strings' contents, Grafana variables and durations."""
    expr = re.sub(r"\$__\w+|\$\w+", "", expr)
    return re.sub(r"\[[^\]]*\]", "", expr)  # range selectors [5m]


def _problems(expr: str, names: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` is not exported: unknown series names and label names."""
    problems = []
    stripped = re.sub(r'"[^"]*"', '""', _promql_only(expr))  # label values hold no names
    used: list[str] = []
    for match in _SELECTOR.finditer(stripped):
        word, braces = match.group(1), match.group(2)
        end = match.end()
        if word in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        rest = stripped[end:].lstrip() if braces is None else ""
        if braces is None and rest.startswith("("):
            problems.append(f"unknown function {word!r}")
            continue
        if braces is None and word in _grouped_labels(stripped):
            continue
        known = names[word] if word in names else PROMETHEUS_SERIES.get(word)
        if known is None:
            problems.append(f"{word!r} is not a metric the bridge exports")
            continue
        used.append(word)
        for label in _MATCHER.findall(braces or ""):
            if label not in known | TARGET_LABELS:
                problems.append(f"{word!r} has no label {label!r}")
    allowed = set().union(*(names.get(w, PROMETHEUS_SERIES.get(w, set())) for w in used))
    allowed |= TARGET_LABELS
    for label in _grouped_labels(stripped):
        if label not in allowed:
            problems.append(f"grouping by {label!r}, which none of {used} has")
    return problems


def _grouped_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for group in _GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }


def test_the_name_check_catches_what_it_should() -> None:
    names = exported()
    assert (
        _problems('sum by (sink) (rate(ably_bridge_sink_retries_total{sink="x"}[5m]))', names) == []
    )
    assert _problems("rate(ably_bridge_no_such_total[5m])", names) == [
        "'ably_bridge_no_such_total' is not a metric the bridge exports"
    ]
    assert _problems('ably_bridge_buffer_depth{sink="x"}', names) == [
        "'ably_bridge_buffer_depth' has no label 'sink'"
    ]
    assert _problems("sum by (phase) (ably_bridge_buffer_depth)", names) == [
        "grouping by 'phase', which none of ['ably_bridge_buffer_depth'] has"
    ]
    assert _problems('up{job="ably-bridge"} == 0', names) == []


def test_every_metric_in_the_dashboard_is_exported() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    names = exported()
    problems = {expr: p for expr in exprs if (p := _problems(expr, names))}
    assert not problems
    text = " ".join(exprs)
    # The panels issue 19 asks for, by the metric each is drawn from.
    for metric in (
        "ably_bridge_events_delivered_total",  # throughput per sink
        "ably_bridge_delivery_latency_seconds_bucket",  # latency quantiles
        "ably_bridge_checkpoint_lag_seconds",
        "ably_bridge_buffer_depth",
        "ably_bridge_dead_letters_total",
        "ably_bridge_connections",
        "ably_bridge_shards_owned",
    ):
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text


def test_every_metric_in_the_alerts_is_exported() -> None:
    names = exported()
    problems = {r["alert"]: p for r in alert_rules() if (p := _problems(r["expr"], names))}
    assert not problems


# -- structure ------------------------------------------------------------------------------
def test_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    board = dashboard()
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time", "refresh"):
        assert key in board, key
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(dashboard_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in {"row", "stat", "timeseries", "gauge", "bargauge", "table"}
        assert panel.get("title"), panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] >= 1
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), f"panel {panel['title']!r} needs a description"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in panel["targets"]:
            assert t["expr"].strip() and t["datasource"] == panel["datasource"]
            assert 'instance=~"$instance"' in t["expr"], t["expr"]  # the replica picker


def test_alert_rules_follow_the_prometheus_rule_schema() -> None:
    doc = alerts()
    assert set(doc) == {"groups"}
    names: list[str] = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert isinstance(rule["alert"], str) and re.fullmatch(r"[A-Za-z_]\w*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert _DURATION.match(str(rule["for"])), rule["for"]
            assert rule["labels"]["severity"] in SEVERITIES
            assert {"summary", "description"} <= set(rule["annotations"])
            assert all(isinstance(v, str) for v in rule["annotations"].values())
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


# -- promtool -------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_alert_rules() -> None:
    result = run_promtool("check", "rules", ALERTS.name, cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_each_alert() -> None:
    """alerts.test.yaml: each alert fires on its series, not before its `for`, not when healthy."""
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    assert tested == {r["alert"] for r in alert_rules()}
    result = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel query, its Grafana variables filled in, is valid PromQL."""
    rules = []
    for index, expr in enumerate(dashboard_exprs()):
        filled = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules.append({"record": f"dashboard:query_{index}", "expr": filled})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_scrape_config_loads_the_alerts(tmp_path: Path) -> None:
    """docs/operating-console.md's prometheus.yml: valid, and its job is the one
    AblyBridgeDown watches."""
    from tests.readme_support import block

    text = block("console-prometheus").text
    config = yaml.safe_load(text)
    (job,) = config["scrape_configs"]
    down = next(r for r in alert_rules() if r["alert"] == "AblyBridgeDown")
    assert f'job="{job["job_name"]}"' in down["expr"]
    (tmp_path / "prometheus.yml").write_text(text)
    shutil.copy(ALERTS, tmp_path / "alerts.yaml")
    result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
