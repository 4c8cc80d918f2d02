"""Where OpenLineage events go, from the KIDJAMO_OPENLINEAGE_* settings to the provider's [openlineage] options."""

from __future__ import annotations

import json

import pytest

from kidjamo.cli.airflow_env import openlineage_environment
from kidjamo.settings import Settings


def _settings(tmp_path, **values) -> Settings:
    return Settings(home=tmp_path, **values)


def test_by_default_events_are_appended_to_a_file_under_kidjamo_home(tmp_path):
    environment = openlineage_environment(_settings(tmp_path))
    assert json.loads(environment["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {
        "type": "file", "log_file_path": str(tmp_path / "lineage" / "openlineage.ndjson"), "append": True}
    assert environment["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "kidjamo"
    assert environment["AIRFLOW__OPENLINEAGE__EXTRACTORS"] == "plugins.lineage.KidjamoTaskExtractor"
    assert (tmp_path / "lineage").is_dir()


def test_http_transport_sends_to_marquez(tmp_path):
    environment = openlineage_environment(_settings(tmp_path, openlineage_transport="http", openlineage_url="http://marquez:5000",
                                                    openlineage_namespace="kidjamo-prod"))
    assert json.loads(environment["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {
        "type": "http", "url": "http://marquez:5000", "endpoint": "api/v1/lineage"}
    assert environment["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "kidjamo-prod"


def test_http_transport_without_a_url_is_refused_with_the_variable_to_set(tmp_path):
    with pytest.raises(ValueError, match="KIDJAMO_OPENLINEAGE_URL"):
        openlineage_environment(_settings(tmp_path, openlineage_transport="http"))


def test_console_and_off(tmp_path):
    assert json.loads(openlineage_environment(_settings(tmp_path, openlineage_transport="console"))["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {"type": "console"}
    assert openlineage_environment(_settings(tmp_path, openlineage_transport="off")) == {"AIRFLOW__OPENLINEAGE__DISABLED": "True"}
    with pytest.raises(ValueError, match="file, console, http or off"):
        openlineage_environment(_settings(tmp_path, openlineage_transport="kafka"))
