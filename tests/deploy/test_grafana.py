"""The Grafana dashboard (deploy/grafana/conrec-filter.json): its layout, its queries (each one
valid PromQL, checked by promtool), the panels an operator needs, and colour thresholds that
agree with the alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promtool import promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HOUR = 3600


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "conrec-filter.json").read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    return exprs + [a["expr"] for a in dashboard["annotations"]["list"]]


def by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    [panel] = [p for p in panels(dashboard) if p["title"] == title]
    return panel


def steps(panel: dict[str, Any]) -> list[tuple[str, float | None]]:
    return [
        (s["color"], s["value"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]


def test_layout(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        used = set(re.findall(r"\$(\w+)", json.dumps(panel["targets"])))
        assert used - {"__rate_interval"} <= variables, panel["title"]


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression, Grafana's variables
    substituted as Grafana would."""
    substituted = [
        expr.replace("$__rate_interval", "5m").replace("$surface", ".*")
        for expr in queries(dashboard)
    ]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(substituted)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_panels_an_operator_needs(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(queries(dashboard))
    for metric in (
        # the batch job
        "conrec_batch_last_success_timestamp_seconds", "conrec_batch_users_written_total",
        "conrec_batch_failed_users_total", "conrec_batch_invalid_sids_total",
        "conrec_batch_duration_seconds", "conrec_batch_last_run_success",
        # surfaces: drop rate by surface and mode, the score histogram, unscored items
        "conrec_filter_candidates_dropped_total", "conrec_filter_max_cosine_bucket",
        "conrec_filter_candidates_unscored_total",
        # config changes
        "conrec_thresholds_config_info", "conrec_thresholds_config_loaded_timestamp_seconds",
        "conrec_codebook_info",
        # safety and measurement: capped drops, the calibrated score, the decision log
        "conrec_filter_candidates_capped_total", "conrec_filter_items_only_total",
        "conrec_filter_calibrated_probability_bucket", "conrec_calibration_info",
        "conrec_calibration_reload_failures_total", "conrec_decision_log_dropped_lines_total",
        # the run cache: hit ratio, size, evictions
        "conrec_prediction_cache_lookups_total", "conrec_prediction_cache_bytes",
        "conrec_prediction_cache_evictions_total",
    ):  # fmt: skip
        assert metric in exprs, metric
    heatmaps = [p for p in panels(dashboard) if p["type"] == "heatmap"]
    assert {h["title"] for h in heatmaps} == {"Max-cosine scores ($surface)",
                                              "Calibrated P(dislike) ($surface)"}  # fmt: skip
    for heatmap in heatmaps:
        assert heatmap["targets"][0]["format"] == "heatmap"
        assert "by (le)" in heatmap["targets"][0]["expr"]
    drop = by_title(dashboard, "Drop rate by surface and mode")
    assert "by (surface, mode)" in drop["targets"][0]["expr"]


def test_colour_thresholds_agree_with_the_alerts(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if "thresholds" in panel["fieldConfig"]["defaults"]:
            values = [v for _, v in steps(panel)]
            assert values[0] is None, panel["title"]  # the base colour
            assert values[1:] == sorted(values[1:]), panel["title"]
    # The red step is where the alert fires.
    assert steps(by_title(dashboard, "Last success age"))[-1] == ("red", 26 * HOUR)
    assert steps(by_title(dashboard, "Prediction age"))[-1] == ("red", 48 * HOUR)
    assert steps(by_title(dashboard, "Unscored candidates"))[-1] == ("red", 0.05)
    assert steps(by_title(dashboard, "Fail-open share"))[-1] == ("red", 0.05)
    # Any failed user or invalid SID is red; no user written is red, some is green.
    assert steps(by_title(dashboard, "Failed users")) == [("green", None), ("red", 1)]
    assert steps(by_title(dashboard, "Invalid SIDs")) == [("green", None), ("red", 1)]
    assert steps(by_title(dashboard, "Users written")) == [("red", None), ("green", 1)]
    cronjob = yaml.safe_load((DEPLOY / "k8s" / "base" / "cronjob.yaml").read_text())
    deadline = cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert steps(by_title(dashboard, "Run duration"))[-1] == ("red", deadline)
