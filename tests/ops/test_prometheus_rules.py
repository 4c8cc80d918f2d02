"""The system-alert rules are valid, and each one is unit-tested firing and not firing by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "kidjamo-system.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "kidjamo-system.test.yml"
PROMTOOL = shutil.which("promtool")



def _promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus (.ci/system-deps)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rule_file_is_valid_for_prometheus():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_is_tested_firing_and_not_firing():
    firing, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - firing == set(), "rules with no firing case"
    assert names - quiet == set(), "rules with no not-firing case"


def test_every_rule_is_a_system_alert_with_a_severity_and_a_runbook():
    for rule in _rules():
        assert rule["labels"]["kind"] == "system", rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["runbook"].startswith("docs/operations.md#"), rule["alert"]


def test_the_issue_s_alerts_are_all_there():
    names = {rule["alert"] for rule in _rules()}
    assert {"KidjamoPipelineStalled", "KidjamoLandingBacklogGrowing", "KidjamoGateFailing", "KidjamoQuarantineShareHigh",
            "KidjamoIngestionRefusalSpike", "KidjamoIngestionErrors", "KidjamoNotificationsFailing",
            "KidjamoCriticalAlertUnacknowledged", "KidjamoExporterDown", "KidjamoDatabaseUnreachable",
            "KidjamoLandingDiskNearlyFull"} <= names
