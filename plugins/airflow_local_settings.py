"""Airflow local settings: the processes that run tasks import the pipeline's libraries once.

Airflow imports ``airflow_local_settings`` at start-up in every component (the plugins folder,
this folder, is on its path). On Linux a task runs in a process *forked* from the component that
executes it — the scheduler's LocalExecutor workers, or a Celery worker's pool process — so what
that component has imported, every task inherits for free. Without this, each of a minute's
tasks imported pandas, pyarrow and Great Expectations again and built a new GX context: ~2-5 s of
a 10,000-sensor minute per task on this machine, several times the task's own work.

Only the components that execute tasks pay the import (and its memory, shared copy-on-write by
their task processes); the api-server, dag-processor and triggerer start as before.
"""

from __future__ import annotations

import sys

__all__: list[str] = []  # Airflow copies the names listed here into airflow.settings: none

#: ``airflow <command>`` words of the components that fork task processes (``airflow standalone``
#: starts ``airflow scheduler`` as a subprocess, which preloads for itself).
TASK_EXECUTING_COMMANDS = ({"scheduler"}, {"celery", "worker"})


def _executes_tasks(argv: list[str]) -> bool:
    words = set(argv[1:3])
    return any(command <= words for command in TASK_EXECUTING_COMMANDS)


def preload_pipeline() -> None:
    """Import the pipeline steps, their libraries, and build the Great Expectations context once."""
    import transforms.pipeline  # noqa: F401 - pandas, pyarrow and every layer step
    from expectations import gate

    gate.warm_up()


if _executes_tasks(sys.argv):
    preload_pipeline()
