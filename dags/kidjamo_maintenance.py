"""
### kidjamo_maintenance — keeps the warehouse, the lake and Airflow itself small and fast

Daily at 02:00 UTC (an hour after the day closes, so the last minute runs of the day are done):

| task | what it does | tuned by (Airflow Variable, default) |
|---|---|---|
| `create_partitions_ahead` | creates the daily partitions of `kidjamo.measurements` for today and the days ahead | `kidjamo_partitions_ahead_days` (7) |
| `apply_retention` | drops measurement partitions older than the retention | `kidjamo_retention_days` (365) |
| `recompute_baselines` | personal baselines: median of the last 7 days outside alert episodes | |
| `compact_lake` | merges the per-minute Parquet files of closed days (bronze, quarantine, silver, gold) into one file per day; raw stays byte-exact | `kidjamo_compaction_lookback_days` (3) |
| `clean_airflow_metadata` | `airflow db clean`: a minute schedule adds 1,440 runs a day to Airflow's database | `kidjamo_airflow_metadata_keep_days` (14) |
| `backup_warehouse` | a base backup of the warehouse into `KIDJAMO_BACKUP_URL` (pg_basebackup, or barman-cloud-backup on S3), then the backup retention (README "Recovery") | `KIDJAMO_BACKUP_RETENTION_DAYS` (7) |
| `report_sizes` | lake files and bytes per layer, database and table sizes (in the task's XCom and log) | |

`airflow db clean` needs Airflow's metadata database, which Airflow 3 hides from task code: give it
through the connection `airflow_metadata` (extra `sql_alchemy_conn`, see docs/operations.md);
without it the task is skipped and says so. Every task is idempotent and can be cleared and re-run.

**kidjamo_maintenance_hourly** refreshes the heavier analytics views and rebuilds the Great
Expectations Data Docs (`$KIDJAMO_HOME/gx/.../local_site/index.html`) every hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, get_current_context, task

from plugins.airflow_glue import DAG_ARGUMENTS, default_args, failure_notifiers, kidjamo_database_url, kidjamo_lake

METADATA_CONNECTION_ID = "airflow_metadata"


def _maintenance(timeout: timedelta) -> dict:
    """What both maintenance DAGs share: tags, retries, failure notifications; ``timeout`` per task."""
    return {**DAG_ARGUMENTS, "tags": ["kidjamo", "maintenance"], "on_failure_callback": failure_notifiers(),
            "default_args": default_args(retries=2, retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=10),
                                         execution_timeout=timeout)}


def _as_of() -> datetime:
    """When the run is for: its logical date, or when it was triggered (manual runs may have none)."""
    context = get_current_context()
    return (context.get("logical_date") or context["dag_run"].run_after).astimezone(timezone.utc)


def _variable(name: str, default: int) -> int:
    from airflow.sdk import Variable

    return int(Variable.get(name, default=default))


@dag(
    dag_id="kidjamo_maintenance",
    schedule="0 2 * * *",
    doc_md=__doc__,
    **_maintenance(timedelta(minutes=30)),
)
def kidjamo_maintenance():
    @task(doc_md="Creates the measurement partitions of today and the next `kidjamo_partitions_ahead_days` days (transforms.partitions.ensure_partitions).")
    def create_partitions_ahead() -> dict:
        from transforms.partitions import ensure_partitions, partition_window

        first_day, last_day = partition_window(_as_of().date(), _variable("kidjamo_partitions_ahead_days", 7))
        return {"first_day": str(first_day), "last_day": str(last_day),
                "created": ensure_partitions(kidjamo_database_url(), first_day, last_day)}

    @task(doc_md="Drops measurement partitions older than `kidjamo_retention_days` (transforms.partitions.apply_retention).")
    def apply_retention() -> dict:
        from transforms.partitions import apply_retention as drop_old_partitions

        keep_days = _variable("kidjamo_retention_days", 365)
        dropped = drop_old_partitions(kidjamo_database_url(), keep_days, _as_of().date())
        return {"keep_days": keep_days, "dropped": list(dropped)}

    @task(doc_md="Recomputes personal baselines from the last 7 days of readings outside alert episodes (transforms.clinical.baselines).")
    def recompute_baselines() -> dict:
        from transforms.clinical.baselines import recompute_baselines as recompute
        from transforms.clinical.rules import default_rules

        return recompute(kidjamo_database_url(), _as_of(), rules=default_rules())

    @task(doc_md="Merges the per-minute Parquet files of each closed day of bronze, quarantine, silver and gold into one file; raw is never touched.")
    def compact_lake() -> dict:
        from transforms.maintenance import compact_closed_days

        return compact_closed_days(kidjamo_lake(), _as_of(), lookback_days=_variable("kidjamo_compaction_lookback_days", 3))

    @task(doc_md="Runs `airflow db clean --skip-archive` for metadata older than `kidjamo_airflow_metadata_keep_days` (connection `airflow_metadata`).")
    def clean_airflow_metadata() -> dict:
        import os

        from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException
        from airflow.sdk import BaseHook

        from transforms.maintenance import clean_airflow_metadata as clean

        try:
            connection = BaseHook.get_connection(METADATA_CONNECTION_ID)
        except AirflowNotFoundException:
            raise AirflowSkipException(
                f"no connection {METADATA_CONNECTION_ID!r}: define it (extra sql_alchemy_conn = Airflow's metadata "
                "database URL) to let maintenance run `airflow db clean` (docs/operations.md)") from None
        metadata_url = connection.extra_dejson.get("sql_alchemy_conn")
        if not metadata_url:
            raise ValueError(f"connection {METADATA_CONNECTION_ID!r} has no extra 'sql_alchemy_conn'")
        environment = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url}
        environment.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
        result = clean(_as_of(), _variable("kidjamo_airflow_metadata_keep_days", 14), environment=environment)
        print(result["output"])
        return {"clean_before": result["clean_before"], "command": result["command"]}

    @task(execution_timeout=timedelta(hours=3),
          doc_md="Base backup of the warehouse into KIDJAMO_BACKUP_URL, then the backup retention (kidjamo.ops.backup.nightly_backup).")
    def backup_warehouse() -> dict:
        from kidjamo.ops.backup import nightly_backup
        from kidjamo.settings import get_settings

        return nightly_backup(kidjamo_database_url(), get_settings(), _as_of())

    @task(trigger_rule="all_done", doc_md="Reports lake files and bytes per layer and database and table sizes.")
    def report_sizes() -> dict:
        from transforms.maintenance import database_sizes, lake_sizes

        lake = lake_sizes(kidjamo_lake())
        database = database_sizes(kidjamo_database_url())
        for layer, size in lake.items():
            print(f"lake {layer:<11} {size['files']:>9,} files {size['bytes'] / 2**20:>12,.1f} MiB")
        print(f"database {database['database_bytes'] / 2**20:,.1f} MiB")
        for relation, size in list(database["relations"].items())[:15]:
            print(f"  {relation:<45} {size / 2**20:>12,.1f} MiB")
        return {"lake": lake, "database": database}

    partitions = create_partitions_ahead()
    retention = apply_retention()
    partitions >> retention
    [retention, recompute_baselines(), compact_lake(), clean_airflow_metadata(), backup_warehouse()] >> report_sizes()


@dag(
    dag_id="kidjamo_maintenance_hourly",
    schedule="5 * * * *",
    doc_md="""
### kidjamo_maintenance_hourly — the heavier analytics views and the Data Docs

Refreshes the analytics materialized views too costly for every minute
(`transforms.views.refresh_views(heavy=True)`, `REFRESH MATERIALIZED VIEW CONCURRENTLY`: analysts
keep reading while it runs); the per-minute views are refreshed by **kidjamo_vitals**. Rebuilds
the Great Expectations Data Docs site from the gates' latest validation results (as
`kidjamo quality docs` does).
""",
    **_maintenance(timedelta(minutes=20)),
)
def kidjamo_maintenance_hourly():
    @task(doc_md="Refreshes the heavier analytics materialized views concurrently.")
    def refresh_heavy_views() -> dict:
        from kidjamo.warehouse.database import pseudonym_key_for
        from transforms.views import refresh_views

        url = kidjamo_database_url()
        return refresh_views(url, heavy=True, pseudonym_key=pseudonym_key_for(url))

    @task(doc_md="Rebuilds the Great Expectations Data Docs site under `$KIDJAMO_HOME/gx` from the gates' latest validation results.")
    def build_data_docs() -> dict:
        from expectations.data_docs import build_data_docs as build
        from kidjamo.settings import get_settings

        return {"index": f"file://{build(kidjamo_lake(), get_settings().home / 'gx')}"}

    refresh_heavy_views()
    build_data_docs()


kidjamo_maintenance()
kidjamo_maintenance_hourly()
