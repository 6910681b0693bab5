"""The alert and recording rules (deploy/prometheus/alerts.yaml): valid for Prometheus, their
alerts unit-tested on input series (tests/deploy/prometheus/*_test.yaml), each with a severity
and a runbook section in docs/operations.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.promtool import promtool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
UNIT_TESTS = sorted((Path(__file__).parent / "prometheus").glob("*_test.yaml"))


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_promtool_unit_tests_of_the_alerts() -> None:
    assert len(UNIT_TESTS) >= 2
    tested = promtool("test", "rules", *UNIT_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_the_batch_and_over_filtering_alerts_are_unit_tested() -> None:
    covered = {
        match for path in UNIT_TESTS for match in re.findall(r"alertname: (\w+)", path.read_text())
    }
    assert {
        "ConrecBatchLastSuccessOld", "ConrecBatchLastRunFailed", "ConrecBatchFailedUsers",
        "ConrecBatchInvalidSIDs", "ConrecSurfaceOverFiltering", "ConrecPredictionsStale",
        "ConrecStoreDown",
    } <= covered  # fmt: skip
    assert covered <= {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_a_severity_and_a_runbook_anchor() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#alert-{name.lower()}"
        assert rule["annotations"]["summary"], name


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_anchor_is_a_section_of_the_operations_doc() -> None:
    doc = ROOT / "docs" / "operations.md"
    assert doc.is_file(), "docs/operations.md holds the alerts' runbooks"
    text = doc.read_text()
    headings = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    explicit = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    missing = [
        rule["alert"]
        for rule in alert_rules()
        if rule["annotations"]["runbook_url"].split("#")[1] not in headings | explicit
    ]
    assert not missing, f"no section (e.g. '### Alert: <name>') in docs/operations.md for {missing}"
