"""
### kidjamo_vitals — one arrival minute of wearable readings, landing to alerts

Every minute this DAG processes the readings that **arrived** during its data interval
`[data_interval_start, data_interval_end)` (one minute; a manual run or `airflow dags test
kidjamo_vitals T` covers the minute that ends at T).

| group | task | reads | writes | checks |
|---|---|---|---|---|
| raw | `to_raw` | `landing/vitals/dt=/hh=/mm=` (and any earlier minute's leftovers) | `raw/vitals/…` + `_manifest.json` | sha256 of every copy before the landing file is removed |
| bronze | `to_bronze` | raw + patient registry | `bronze/vitals/…`, `quarantine/vitals/…/bronze.parquet` | types, plausibility ranges, timestamps, registry |
| bronze | `gate_bronze` | bronze | `gates/vitals/…` | Great Expectations suite `bronze` |
| silver | `to_silver` | bronze, gate, warehouse keys, baselines | `gates/vitals/…/silver_candidates.parquet`, quarantine (duplicates) | deduplication within and across batches |
| silver | `gate_silver` | silver candidates | `silver/vitals/…`, quarantine (rejected) | suite `silver`; accounting raw = bronze + quarantined, bronze = silver + rejected + duplicates |
| gold | `to_gold` | silver | `gold/vitals/…` | |
| warehouse | `load` | silver, quarantine | `kidjamo.measurements`, `kidjamo.quarantine` | COPY + idempotent upsert |
| warehouse | `refresh_views` | | `analytics.*` | concurrent refresh |
| alerts | `alerts` | silver + recent history | `kidjamo.alerts`, notifications | CLINICAL.md rules, sent once |

Landing is always drained: `to_raw` also takes the landing files of earlier minutes (minutes this
DAG skipped — `catchup=False` — or whose run failed) into its own minute, as `backlog-<minute>-<name>`.

Every task is idempotent: clearing a task, re-running the run, or backfilling a range rewrites the
same lake partitions and database rows. To re-process a wide interval (a day) in one run use
**kidjamo_reprocess**. Each task returns its counts (XCom) and records them in `kidjamo.pipeline_runs`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, get_current_context, task, task_group

from plugins.airflow_glue import failure_notifiers, kidjamo_database_url, kidjamo_lake

LAYER_ASSETS = {layer: Asset(name=f"kidjamo_{layer}_vitals", uri=f"kidjamo://lake/{layer}/vitals") for layer in ("raw", "bronze", "silver", "gold")}
WAREHOUSE_ASSET = Asset(name="kidjamo_warehouse_measurements", uri="kidjamo://warehouse/kidjamo/measurements")
ALERTS_ASSET = Asset(name="kidjamo_alerts", uri="kidjamo://warehouse/kidjamo/alerts")
WAREHOUSE_POOL = "kidjamo_warehouse"  # shared with kidjamo_reprocess: bounds concurrent warehouse writers


def _interval():
    """The pipeline interval of the running task: its data interval, lake, warehouse and run id."""
    from transforms.pipeline import Interval

    context = get_current_context()
    return Interval(context["data_interval_start"], context["data_interval_end"], kidjamo_lake(),
                    kidjamo_database_url(), context["run_id"], drain_landing_backlog=True)


@dag(
    dag_id="kidjamo_vitals",
    schedule=CronDataIntervalTimetable("* * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # minutes are processed in arrival order: cross-batch deduplication relies on it
    dagrun_timeout=timedelta(minutes=5),
    doc_md=__doc__,
    tags=["kidjamo", "vitals", "medallion"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(seconds=50),
        "on_failure_callback": failure_notifiers(),  # pipeline failures (not patient alerts) on the alert channels
    },
)
def kidjamo_vitals():
    @task_group(group_id="raw", tooltip="landing -> raw, byte-exact and verified")
    def raw():
        @task(outlets=[LAYER_ASSETS["raw"]], doc_md="Copies landing files to raw (sha256-verified), writes the manifest, then removes them from landing.")
        def to_raw() -> dict:
            from transforms.pipeline import step_to_raw

            return step_to_raw(_interval())

        to_raw()

    @task_group(group_id="bronze", tooltip="typed rows | quarantine, then the bronze gate")
    def bronze():
        @task(outlets=[LAYER_ASSETS["bronze"]], doc_md="Parses and types every raw record; what fails goes to quarantine with a reason code.")
        def to_bronze() -> dict:
            from transforms.pipeline import step_to_bronze

            return step_to_bronze(_interval())

        @task(doc_md="Great Expectations suite `bronze`: failing rows are set aside; schema drift or a flood of bad rows fails the run.")
        def gate_bronze() -> dict:
            from transforms.pipeline import step_gate_bronze

            return step_gate_bronze(_interval())

        to_bronze() >> gate_bronze()

    @task_group(group_id="silver", tooltip="deduplicated, enriched, then the silver gate and accounting")
    def silver():
        @task(doc_md="Deduplicates on (device_id, measured_at), joins the registry and baselines, computes NEWS2, heat index, PSI and quality flags.")
        def to_silver() -> dict:
            from transforms.pipeline import step_to_silver

            return step_to_silver(_interval())

        @task(outlets=[LAYER_ASSETS["silver"]], doc_md="Great Expectations suite `silver`; then checks that no record went missing between layers.")
        def gate_silver() -> dict:
            from transforms.pipeline import step_gate_silver

            return step_gate_silver(_interval())

        to_silver() >> gate_silver()

    @task_group(group_id="gold", tooltip="patient-minute features")
    def gold():
        @task(outlets=[LAYER_ASSETS["gold"]], doc_md="Aggregates silver into patient-minute features.")
        def to_gold() -> dict:
            from transforms.pipeline import step_to_gold

            return step_to_gold(_interval())

        to_gold()

    @task_group(group_id="warehouse", tooltip="PostgreSQL load and analytics views")
    def warehouse():
        @task(outlets=[WAREHOUSE_ASSET], pool=WAREHOUSE_POOL,
              doc_md="COPY silver and quarantine rows into PostgreSQL; re-loading changes nothing.")
        def load() -> dict:
            from transforms.pipeline import step_load

            return step_load(_interval())

        @task(pool=WAREHOUSE_POOL, doc_md="Refreshes the per-minute analytics materialized views concurrently.")
        def refresh_views() -> dict:
            from transforms.pipeline import step_refresh_views

            return step_refresh_views(_interval())

        load() >> refresh_views()

    @task_group(group_id="alerts", tooltip="clinical rules, alert lifecycle, notifications")
    def alerts():
        @task(outlets=[ALERTS_ASSET], pool=WAREHOUSE_POOL,
              doc_md="Applies the CLINICAL.md rules with recent history; upserts alerts; sends each notification once.")
        def raise_alerts() -> dict:
            from transforms.pipeline import step_alerts

            return step_alerts(_interval())

        raise_alerts()

    checked_silver = raw() >> bronze() >> silver()
    warehouse_group = warehouse()
    checked_silver >> [gold(), warehouse_group]
    # Alerts wait for the load (their history includes this batch), not for the view refresh.
    warehouse_group.children["warehouse.load"] >> alerts()


kidjamo_vitals()
