"""The compose file's monitoring: the exporter runs a real command; Prometheus and Alertmanager get the repo's files."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from tests.ops.test_compose import PROJECT_ROOT, compose_config  # noqa: F401 - the shared fixture


def _mounts(service: dict) -> dict[str, Path]:
    """{container path: host path} of a service's bind mounts."""
    return {volume["target"]: Path(volume["source"]) for volume in service.get("volumes", []) if volume["type"] == "bind"}


def test_exporter_runs_the_metrics_command_on_the_scraped_port(compose_config: dict):
    from kidjamo.cli import main

    service = compose_config["services"]["exporter"]
    words = list(service["entrypoint"])[1:] + list(service["command"])
    group = main
    while isinstance(group, click.Group):
        assert words[0] in group.commands, f"no command {words[0]}"
        group, words = group.commands[words[0]], words[1:]
    parameters = group.make_context("serve", words).params
    assert (parameters["host"], parameters["port"]) == ("0.0.0.0", 9464)
    scraped = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in scraped}
    assert targets == {"kidjamo-exporter": ["exporter:9464"], "kidjamo-ingestion": ["ingestion:8000"]}


def test_prometheus_loads_the_repository_rules_and_sends_to_alertmanager(compose_config: dict):
    mounts = _mounts(compose_config["services"]["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == PROJECT_ROOT / "deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == PROJECT_ROOT / "deploy/prometheus/rules"
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    assert list(mounts["/etc/prometheus/rules"].glob("*.rules.yml"))
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_alertmanager_gets_the_on_call_url_in_place_of_the_placeholder(compose_config: dict):
    service = compose_config["services"]["alertmanager"]
    mounts = _mounts(service)
    config_file = mounts["/etc/alertmanager/alertmanager.yml"]
    assert config_file == PROJECT_ROOT / "deploy/alertmanager/alertmanager.yml"
    placeholder = yaml.safe_load(config_file.read_text())["receivers"][0]["webhook_configs"][0]["url"]
    script = " ".join(service["command"])
    # `$$` is Compose's escape: the container's shell gets ${ONCALL_WEBHOOK_URL} and expands it.
    assert f"s|{placeholder}|$${{ONCALL_WEBHOOK_URL}}|" in script
    assert service["environment"]["ONCALL_WEBHOOK_URL"].startswith("https://")
