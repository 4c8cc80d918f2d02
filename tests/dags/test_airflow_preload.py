"""Airflow components that fork task processes import the pipeline once; the others do not."""

import subprocess
import sys

import pytest

from kidjamo.cli.airflow_env import PROJECT_ROOT, airflow_environment

PROBE = ("import sys; sys.argv = {argv!r}; import airflow.settings; "
         "print(sorted(m for m in ('great_expectations', 'pandas', 'transforms.pipeline') if m in sys.modules))")


def _preloaded(argv: list[str], tmp_path) -> list[str]:
    from kidjamo.settings import Settings

    environment = {**airflow_environment(Settings(home=tmp_path)), "PATH": "/usr/bin:/bin",
                   "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins")}
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], env=environment, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's list literal


@pytest.mark.parametrize("argv", [["airflow", "scheduler"], ["airflow", "celery", "worker"]])
def test_components_that_fork_tasks_preload_pandas_great_expectations_and_the_steps(argv, tmp_path):
    assert _preloaded(argv, tmp_path) == ["great_expectations", "pandas", "transforms.pipeline"]


@pytest.mark.parametrize("argv", [["airflow", "api-server"], ["airflow", "triggerer"]])
def test_other_components_start_without_the_pipeline_libraries(argv, tmp_path):
    assert "great_expectations" not in _preloaded(argv, tmp_path)
