"""The Grafana dashboard asks only for metrics (and labels) that tabletopic exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tabletopic-dashboard.json"

# What the application exposes: name -> (type, labels).
METRICS: dict[str, tuple[str, set[str]]] = {
    "tabletopic_consumer_lag_records": ("gauge", {"table", "topic", "partition"}),
    "tabletopic_committed_offset": ("gauge", {"table", "topic", "partition"}),
    "tabletopic_records_consumed_total": ("counter", {"table"}),
    "tabletopic_bytes_consumed_total": ("counter", {"table"}),
    "tabletopic_records_committed_total": ("counter", {"table"}),
    "tabletopic_bytes_committed_total": ("counter", {"table"}),
    "tabletopic_commit_duration_seconds": ("histogram", {"table"}),
    "tabletopic_commits_total": ("counter", {"table", "outcome"}),
    "tabletopic_commit_conflicts_total": ("counter", {"table"}),
    "tabletopic_commit_retries_total": ("counter", {"table"}),
    "tabletopic_commit_files": ("histogram", {"table"}),
    "tabletopic_commit_bytes": ("histogram", {"table"}),
    "tabletopic_buffer_bytes": ("gauge", {"table"}),
    "tabletopic_freshness_seconds": ("gauge", {"table"}),
    "tabletopic_dead_letters_total": ("counter", {"table", "reason"}),
    "tabletopic_compaction_runs_total": ("counter", {"table"}),
    "tabletopic_compaction_files_rewritten_total": ("counter", {"table"}),
    "tabletopic_rebalances_total": ("counter", {"kind"}),
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_METRIC_LIKE = re.compile(r"\btabletopic_[a-zA-Z0-9_]*")


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return found


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in panels(dashboard) for target in panel.get("targets", [])]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    queries = [target["expr"] for target in targets(dashboard)]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def metric(series: str) -> tuple[str, str]:
    """A series name as (metric, suffix): a histogram's _bucket/_sum/_count belong to it."""
    if series in METRICS:
        return series, ""
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base, ("",))[0] == "histogram":
            return base, suffix
    raise AssertionError(f"{series} is not a metric tabletopic exposes")


def labels_of(expr: str) -> set[str]:
    labels = set()
    for series in _METRIC_LIKE.findall(expr):
        base, suffix = metric(series)
        labels |= METRICS[base][1] | ({"le"} if suffix == "_bucket" else set())
    return labels


def test_dashboard_has_panels_with_queries() -> None:
    dashboard = load()
    assert len(targets(dashboard)) >= len(METRICS)
    assert all(target["expr"].strip() for target in targets(dashboard))


@pytest.mark.parametrize("expr", expressions(load()))
def test_expression_uses_only_exposed_metrics_and_labels(expr: str) -> None:
    names = _METRIC_LIKE.findall(expr)
    assert names, f"no tabletopic metric in {expr!r}"
    for name in names:
        metric(name)
    for name, matchers in _SELECTOR.findall(expr):
        assert name.startswith("tabletopic_"), f"{name} in {expr!r}"
        base, suffix = metric(name)
        allowed = METRICS[base][1] | ({"le"} if suffix == "_bucket" else set())
        assert set(_MATCHER.findall(matchers)) <= allowed, f"{name}{{{matchers}}}"
    for grouping in _GROUPING.findall(expr):
        grouped = {label.strip() for label in grouping.split(",") if label.strip()}
        assert grouped <= labels_of(expr), f"by ({grouping}) in {expr!r}"
    if expr.startswith("label_values("):
        assert expr.rstrip(")").rsplit(",", 1)[1].strip() in labels_of(expr)


def test_legends_name_labels_the_query_keeps() -> None:
    for target in targets(load()):
        legend = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
        kept = set().union(*({*map(str.strip, g.split(","))} for g in _GROUPING.findall(target["expr"])))
        assert legend <= kept, f"legend {target['legendFormat']!r} for {target['expr']!r}"


def test_every_metric_has_a_panel() -> None:
    used = {metric(name)[0] for expr in expressions(load()) for name in _METRIC_LIKE.findall(expr)}
    assert set(METRICS) - used == set()


def test_datasource_and_table_are_variables() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["table"]["type"] == "query"
    assert variables["table"]["definition"].startswith("label_values(") and variables["table"]["multi"] is True
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    for target in targets(dashboard):
        assert target["datasource"]["uid"] == "${datasource}"
        if "table" in labels_of(target["expr"]):
            assert '$table"' in target["expr"], f"not filtered by $table: {target['expr']!r}"


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in panels(load())]
    assert len(ids) == len(set(ids))
