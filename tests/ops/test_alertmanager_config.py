"""Alertmanager's configuration is valid and routes every system alert to on-call, never to a care team."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RULES = DEPLOY / "prometheus" / "rules" / "kidjamo-system.rules.yml"
AMTOOL = shutil.which("amtool")



def _amtool(*args: str) -> subprocess.CompletedProcess:
    assert AMTOOL, "amtool is missing: `make test` installs Debian's prometheus-alertmanager (.ci/system-deps)"
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_config_is_valid_for_alertmanager():
    result = _amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]],
                         ids=lambda rule: rule["alert"])
def test_every_system_alert_is_routed_to_on_call(rule: dict):
    labels = [f"alertname={rule['alert']}", *(f"{key}={value}" for key, value in rule["labels"].items())]
    result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["oncall"]


def test_an_alert_that_claims_to_be_clinical_still_reaches_only_on_call():
    result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", "kind=clinical", "severity=critical")
    assert result.stdout.split() == ["oncall"]


def test_no_receiver_is_a_clinical_channel():
    config = yaml.safe_load(CONFIG.read_text())
    assert [receiver["name"] for receiver in config["receivers"]] == ["oncall"]
    targets = [hook["url"] for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])]
    assert targets and all("oncall" in url for url in targets)
    assert not any(key in receiver for receiver in config["receivers"]
                   for key in ("sns_configs", "email_configs", "slack_configs", "pagerduty_configs"))
