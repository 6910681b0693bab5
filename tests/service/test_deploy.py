"""The deploy examples stay in step with the service: the thresholds file loads, and alert
rules and the dashboard only query metrics that the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from service.core.thresholds import parse_thresholds
from service.metrics import create_metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bconrec_[a-z_]+")


def exported_names() -> set[str]:
    """Every series name the service can export (labelled series exist only once used)."""
    registry = CollectorRegistry()
    create_metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in ("", *suffixes.get(family.type, ()))
    }


def test_example_thresholds_file_is_valid() -> None:
    thresholds = parse_thresholds((DEPLOY / "thresholds.yaml").read_bytes())
    assert thresholds.for_surface("search") == 0.95
    assert thresholds.override_range.min <= thresholds.default <= thresholds.override_range.max


def test_alert_rules_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used
    assert used <= exported_names(), used - exported_names()


def test_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "conrec-filter.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(used) >= 8
    assert used <= exported_names(), used - exported_names()
