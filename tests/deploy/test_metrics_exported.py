"""Every metric the alerts, the recording rules and the dashboard query is exported: by a running
service (its /metrics over real HTTP, after /filter calls on enforced, shadow and unknown
surfaces) or by the nightly batch job (its textfile, after a real run of the tiny model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conrec.batch_gen.config import NightlyConfig
from conrec.batch_gen.engines.base import EngineConfig
from conrec.batch_gen.job import BatchJobConfig
from conrec.batch_gen.nightly import run_nightly
from conrec.service.core.config import Settings
from conrec.service.main import create_app, serving
from conrec.store.connection import connect
from conrec.store.runs import PredictionStore
from tests.batch_gen.conftest import model_dir  # noqa: F401  (the tiny model fixture)
from tests.redis_support import isolated_prefix
from tests.service.support import ITEMS, build_artifact, publish_run

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# A metric name, not the middle of a recording rule's level:name:operations.
METRIC = re.compile(r"(?<![\w:])conrec_[a-z_]+(?![\w:])")
RECORDED = re.compile(r"\b[a-z_]+:conrec_[a-z_]+:[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
THRESHOLDS = """\
version: t1
default: 0.9
surfaces:
  home: 0.8
  related: {threshold: 0.8, mode: shadow}
"""


def exposed(text: str) -> set[str]:
    """The series names an exposition declares, also those of labelled metrics not yet used."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, ("",))
    } | {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "conrec-filter.json").read_text())
    targets = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return targets + [a["expr"] for a in dashboard["annotations"]["list"]]


@pytest.fixture(scope="module")
def service_metrics(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> str:
    tmp = tmp_path_factory.mktemp("service")
    version = build_artifact(tmp / "codebook")
    (tmp / "thresholds.yaml").write_text(THRESHOLDS)
    with isolated_prefix(redis_url) as prefix:
        store = PredictionStore(connect(redis_url), prefix=prefix, pointer_cache_s=0.0)
        publish_run(store, "r1", version, {"u": [(0, 0, 0), (1, 0, 0)]})
        settings = Settings(
            redis_url=redis_url,
            store_prefix=prefix,
            codebook_dir=tmp / "codebook",
            thresholds_file=tmp / "thresholds.yaml",
            pointer_cache_s=0.0,
        )
        candidates = [{"item_id": n, "sid": list(s)} for n, s in ITEMS.items()]
        candidates.append({"item_id": "not-in-the-table"})  # unscored
        with serving(create_app(settings)) as url, httpx.Client(base_url=url) as client:
            for surface in ("home", "related", "a-typo", None):
                body = {"user_id": "u", "candidates": candidates, "surface": surface}
                answer = client.post("/filter", json={k: v for k, v in body.items() if v})
                assert answer.status_code == 200, answer.text
            return client.get("/metrics").text


@pytest.fixture(scope="module")
def batch_metrics(
    tmp_path_factory: pytest.TempPathFactory,
    ml100k,
    model_dir: Path,  # noqa: F811
    artifact_dir: Path,
    redis_url: str,
) -> str:
    tmp = tmp_path_factory.mktemp("batch")
    cfg = NightlyConfig(
        model_dir=str(model_dir),
        codebook_dir=str(artifact_dir),
        job=BatchJobConfig(run_id="night1", checkpoint_dir=str(tmp / "ckpt"), batch_size=8),
        engine="hf",
        cutoff="midpoint",
        metrics_file=str(tmp / "batch.prom"),
        max_users=8,
    )
    with isolated_prefix(redis_url) as prefix:
        store = PredictionStore(connect(redis_url), prefix=prefix, pointer_cache_s=0.0)
        summary = run_nightly(cfg, ml100k.events, EngineConfig(str(model_dir), batch_size=8), store)
    assert summary.status == "published"
    return (tmp / "batch.prom").read_text()


def test_the_service_labels_surfaces_and_modes(service_metrics: str) -> None:
    dropped = {
        (s.labels["surface"], s.labels["mode"])
        for f in text_string_to_metric_families(service_metrics)
        for s in f.samples
        if s.name == "conrec_filter_candidates_dropped_total"
    }
    assert {("home", "enforce"), ("related", "shadow"), ("other", "enforce")} <= dropped


def test_every_metric_the_rules_and_dashboard_use_is_exported(
    service_metrics: str, batch_metrics: str
) -> None:
    exported = exposed(service_metrics) | exposed(batch_metrics)
    exprs = rule_exprs() + dashboard_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(used) >= 25
    assert not used - exported, f"queried but not exported: {sorted(used - exported)}"
    assert {n for n in exported if n.startswith("conrec_batch_")} >= {
        "conrec_batch_last_success_timestamp_seconds",
        "conrec_batch_last_run_timestamp_seconds",
        "conrec_batch_last_run_success",
    }
    # The recording rules the dashboard and alerts read are defined in the rule file.
    recorded = {
        rule["record"]
        for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    assert {name for expr in exprs for name in RECORDED.findall(expr)} <= recorded
