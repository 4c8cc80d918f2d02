"""What the DAGs share: where tasks find the database and the lake, the assets, the warehouse pool,
the default arguments, and how a task runs a pipeline step with its context.

Inside Airflow the connection ``kidjamo_postgres`` (e.g. ``AIRFLOW_CONN_KIDJAMO_POSTGRES``) wins over
``KIDJAMO_DATABASE_URL`` when it is defined; otherwise the project settings decide (README,
"Configuration").
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset

from kidjamo.lake.storage import Lake
from kidjamo.warehouse import database
from plugins.pools import WAREHOUSE

CONNECTION_ID = "kidjamo_postgres"
#: The pool of the warehouse writers (plugins/pools.py); tasks take it by name.
WAREHOUSE_POOL = WAREHOUSE.name

LAYER_ASSETS = {layer: Asset(name=f"kidjamo_{layer}_vitals", uri=f"kidjamo://lake/{layer}/vitals")
                for layer in ("raw", "bronze", "silver", "gold")}
WAREHOUSE_ASSET = Asset(name="kidjamo_warehouse_measurements", uri="kidjamo://warehouse/kidjamo/measurements")
ALERTS_ASSET = Asset(name="kidjamo_alerts", uri="kidjamo://warehouse/kidjamo/alerts")

#: What every kidjamo DAG has in common (each names its own id, schedule, docs and tags).
DAG_ARGUMENTS = {"start_date": datetime(2026, 1, 1, tzinfo=timezone.utc), "catchup": False, "max_active_runs": 1}


def default_args(*, retries: int, retry_delay: timedelta | None = None, max_retry_delay: timedelta | None = None,
                 execution_timeout: timedelta | None = None, **more) -> dict:
    """Task defaults of a kidjamo DAG: owner, retries (with exponential backoff when capped), timeout."""
    arguments = {"owner": "data-platform", "retries": retries}
    if retry_delay is not None:
        arguments["retry_delay"] = retry_delay
    if max_retry_delay is not None:
        arguments |= {"retry_exponential_backoff": True, "max_retry_delay": max_retry_delay}
    if execution_timeout is not None:
        arguments["execution_timeout"] = execution_timeout
    return arguments | more


def kidjamo_database_url() -> str:
    """The warehouse URL for a task: the Airflow connection if defined, else the project settings."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(CONNECTION_ID)
    except AirflowNotFoundException:
        return database.ensure_database()
    return database.libpq_url(connection.get_uri().replace("postgres://", "postgresql://", 1))


def kidjamo_lake() -> Lake:
    return Lake.from_settings()


def configured_shards() -> int:
    """``KIDJAMO_SHARDS`` where the DAG is parsed: the number of map indexes of a sharded step.

    Each task receives the count as an argument, so the shards of one run agree even if a worker's
    environment differs; a new count applies to runs created after the DAG is parsed again.
    """
    from kidjamo.settings import get_settings

    return get_settings().shards


def run_pipeline_step(step: str, *, drain_landing_backlog: bool = False, shards: int | None = None,
                      shard: int | None = None) -> dict:
    """Run ``transforms.pipeline.step_<step>`` over the running task's data interval; return its counts.

    The step's context (lake, database, settings, rules, run id) is built here, once per task.
    ``drain_landing_backlog``: a minute run's ``to_raw`` also takes earlier minutes' landing files.
    ``shards``/``shard``: the run's shard count and this task's shard (None for a step joining them).
    """
    from airflow.sdk import get_current_context

    from transforms import pipeline

    context = get_current_context()
    interval = pipeline.Interval.for_task(context["data_interval_start"], context["data_interval_end"], lake=kidjamo_lake(),
                                          database_url=kidjamo_database_url(), run_id=context["run_id"],
                                          drain_landing_backlog=drain_landing_backlog, shards=shards, shard=shard)
    return getattr(pipeline, f"step_{step}")(interval)


def step_task(step: str, *, task_id: str | None = None, drain_landing_backlog: bool = False, shards: int = 1,
              **arguments):
    """An Airflow task (``task_id``, default ``step``) that runs :func:`run_pipeline_step` for ``step`` once per run
    (with several ``shards``, the run's step that joins them)."""
    from airflow.sdk import task

    def run() -> dict:
        return run_pipeline_step(step, drain_landing_backlog=drain_landing_backlog, shards=shards)

    return task(task_id=task_id or step, **arguments)(run)


def shard_step(step: str, shards: int, *, task_id: str | None = None, **arguments):
    """The task of ``step`` in a run: one task with one shard, else mapped over the shards (dynamic task
    mapping: one task instance per shard, labelled ``shard k of n``, each returning its own counts)."""
    from airflow.sdk import get_current_context, task

    if shards == 1:
        return step_task(step, task_id=task_id, **arguments)()

    def run(shard: int, shards: int) -> dict:
        get_current_context()["shard_label"] = f"shard {shard} of {shards}"
        return run_pipeline_step(step, shards=shards, shard=shard)

    mapped = task(task_id=task_id or step, map_index_template="{{ shard_label }}", **arguments)(run)
    return mapped.partial(shards=shards).expand(shard=list(range(shards)))


def failure_notifiers() -> list:
    """Notifiers that report a failed task or run (not patient alerts) on the configured channels."""
    from plugins.notifiers import PipelineFailureNotifier

    return [PipelineFailureNotifier()]
