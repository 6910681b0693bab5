"""The compose example (deploy/docker-compose.yaml) and what it mounts: valid for Compose (its
`config` needs no Docker daemon), files present, healthchecks and start order, the service's
settings as Compose resolves them, Prometheus and Grafana wired to each other."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from conrec.service.api.routes.ops import router as ops_router
from conrec.service.core.config import Settings
from conrec.service.core.thresholds import parse_thresholds
from tests.deploy.promtool import promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as Compose resolves it, with no variable set (the documented defaults)."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: `make test` installs it (tests/deploy/tools.sh)")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_PASSWORD", "CONREC_API_KEY"}}
    resolved = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(resolved.stdout)


def test_compose_rejects_a_bad_file(tmp_path: Path) -> None:
    """The check above has teeth: an unknown key fails `docker-compose config`."""
    raw = yaml.safe_load(COMPOSE.read_text())
    raw["services"]["filter"]["healthcheck"]["intervall"] = "10s"
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(yaml.safe_dump(raw))
    resolved = subprocess.run(
        ["docker-compose", "-f", str(bad), "config"], capture_output=True, text=True, timeout=60
    )
    assert resolved.returncode != 0
    assert "intervall" in resolved.stderr


def test_every_bind_mounted_file_exists(compose: dict[str, Any]) -> None:
    artifacts = DEPLOY.parent / "artifacts"  # written by `conrec codebook train`, not shipped
    mounts = [
        Path(volume.split(":")[0])
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("/")
    ]
    assert len(mounts) >= 5
    for path in mounts:
        assert path.exists() or path.is_relative_to(artifacts), f"{path} does not exist"


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "redis-cli" in " ".join(services["redis"]["healthcheck"]["test"])
    assert services["filter"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    probe = " ".join(services["filter"]["healthcheck"]["test"])
    assert "/readyz" in probe
    assert "/readyz" in {route.path for route in ops_router.routes}
    assert services["prometheus"]["healthcheck"]["test"]


def test_the_service_settings_as_compose_passes_them(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["filter"]["environment"]
    for name in [n for n in os.environ if n.startswith("CONREC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    # Blank (the variable unset) means no key, not a key nobody can send.
    assert env["CONREC_API_KEY"] == ""
    assert settings.api_key is None
    # An explicit URL at the compose Redis, with the password Redis is started with.
    url = urlsplit(settings.redis_url.get_secret_value())
    assert url.hostname == "redis"
    assert not settings.embedded
    redis_command = compose["services"]["redis"]["command"]
    assert url.password == redis_command[redis_command.index("--requirepass") + 1]
    assert settings.thresholds_file.parent == Path("/config")
    assert settings.thresholds_file.name == "thresholds.yaml"


def test_the_example_thresholds_file_is_valid() -> None:
    thresholds = parse_thresholds((DEPLOY / "thresholds.yaml").read_bytes())
    # A threshold chosen from data where there is one; shadow mode where there is none.
    assert thresholds.policy("home")[1].mode == "enforce"
    assert thresholds.policy("search")[1].mode == "shadow"
    bounds = thresholds.bounds(thresholds.score)
    assert bounds.min <= thresholds.default <= bounds.max


def test_prometheus_config_loads_the_alerts_and_scrapes_the_service(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yaml").read_text())
    mounts = dict(v.split(":")[1::-1] for v in compose["services"]["prometheus"]["volumes"])
    assert config["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    assert Path(mounts["/etc/prometheus/alerts.yaml"]) == DEPLOY / "prometheus" / "alerts.yaml"
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["conrec-filter"] == ["filter:8000"]  # the compose service and its port
    host, port = targets["conrec-batch"][0].split(":")
    assert host in compose["services"]
    assert compose["services"][host]["ports"][0]["target"] == int(port)
    # promtool checks the config with the rule file where this checkout has it.
    config["rule_files"] = [mounts["/etc/prometheus/alerts.yaml"]]
    local = tmp_path / "prometheus.yaml"
    local.write_text(yaml.safe_dump(config))
    checked = promtool("check", "config", local)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(
    compose: dict[str, Any],
) -> None:
    mounts = dict(v.split(":")[1::-1] for v in compose["services"]["grafana"]["volumes"])
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert urlsplit(source["url"]).hostname in compose["services"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "conrec.yaml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    dashboards = [Path(host) for target, host in mounts.items() if target.startswith(f"{folder}/")]
    assert dashboards == [DEPLOY / "grafana" / "conrec-filter.json"]
