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
| alerts | `alerts` | silver + recent history | `kidjamo.alerts`, notifications | clinical rules (docs/clinical-rules.md), sent once |

With `KIDJAMO_SHARDS=N` (N > 1) the steps from `to_bronze` to `raise_alerts` are mapped over N
shards (one task instance per shard, dynamic task mapping), so N workers share a minute; `to_raw`,
`silver.accounting`, `refresh_views` and `alerts.alerts_sweep` run once and join the shards
(README, "Scaling out").

Landing is always drained: `to_raw` also takes the landing files of earlier minutes (minutes this
DAG skipped — `catchup=False` — or whose run failed) into its own minute, as `backlog-<minute>-<name>`.

Every task is idempotent: clearing a task, re-running the run, or backfilling a range rewrites the
same lake partitions and database rows. To re-process a wide interval (a day) in one run use
**kidjamo_reprocess**. Each task returns its counts (XCom) and records them in `kidjamo.pipeline_runs`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task_group

from plugins.airflow_glue import (
    ALERTS_ASSET, DAG_ARGUMENTS, LAYER_ASSETS, WAREHOUSE_ASSET, WAREHOUSE_POOL, configured_shards, default_args,
    failure_notifiers, shard_step, step_task,
)


@dag(
    dag_id="kidjamo_vitals",
    schedule=CronDataIntervalTimetable("* * * * *", timezone="UTC"),
    **DAG_ARGUMENTS,  # one active run: minutes are processed in arrival order (cross-batch deduplication)
    dagrun_timeout=timedelta(minutes=5),
    doc_md=__doc__,
    tags=["kidjamo", "vitals", "medallion"],
    default_args=default_args(
        retries=2, retry_delay=timedelta(seconds=5), max_retry_delay=timedelta(seconds=30),
        execution_timeout=timedelta(seconds=50),
        on_failure_callback=failure_notifiers(),  # pipeline failures (not patient alerts) on the alert channels
    ),
)
def kidjamo_vitals():
    shards = configured_shards()

    @task_group(group_id="raw", tooltip="landing -> raw, byte-exact and verified")
    def raw():
        step_task("to_raw", outlets=[LAYER_ASSETS["raw"]], drain_landing_backlog=True, shards=shards,
                  doc_md="Copies landing files to raw (sha256-verified), writes the manifest, then removes them from landing; "
                         "also takes earlier minutes' leftovers (landing is always drained).")()

    @task_group(group_id="bronze", tooltip="typed rows | quarantine, then the bronze gate")
    def bronze():
        to_bronze = shard_step("to_bronze", shards, outlets=[LAYER_ASSETS["bronze"]],
                               doc_md="Parses and types every raw record; what fails goes to quarantine with a reason code. "
                                      "With several shards, each types its share of the raw files and routes every row "
                                      "to the shard of its device's patient.")
        gate_bronze = shard_step("gate_bronze", shards, doc_md="Great Expectations suite `bronze`: failing rows and flooding "
                                                               "devices' readings are set aside; schema drift or broken "
                                                               "lineage fails the run.")
        to_bronze >> gate_bronze

    @task_group(group_id="silver", tooltip="deduplicated, enriched, then the silver gate and accounting")
    def silver():
        to_silver = shard_step("to_silver", shards, doc_md="Deduplicates on (device_id, measured_at), joins the registry "
                                                           "and baselines, computes NEWS2, heat index, PSI and quality flags.")
        gate_silver = shard_step("gate_silver", shards, outlets=[LAYER_ASSETS["silver"]],
                                 doc_md="Great Expectations suite `silver`; then (one shard) checks that no record went "
                                        "missing between layers.")
        to_silver >> gate_silver
        if shards > 1:
            gate_silver >> step_task("accounting", shards=shards,
                                     doc_md="Checks over every shard that no record went missing between layers.")()

    @task_group(group_id="gold", tooltip="patient-minute features")
    def gold():
        shard_step("to_gold", shards, outlets=[LAYER_ASSETS["gold"]], doc_md="Aggregates silver into patient-minute features.")

    @task_group(group_id="warehouse", tooltip="PostgreSQL load and analytics views")
    def warehouse():
        load = shard_step("load", shards, outlets=[WAREHOUSE_ASSET], pool=WAREHOUSE_POOL,
                          doc_md="COPY silver and quarantine rows into PostgreSQL; re-loading changes nothing.")
        refresh_views = step_task("refresh_views", pool=WAREHOUSE_POOL, shards=shards,
                                  doc_md="Refreshes the per-minute analytics materialized views concurrently.")
        load >> refresh_views()

    @task_group(group_id="alerts", tooltip="clinical rules, alert lifecycle, notifications")
    def alerts():
        raise_alerts = shard_step("alerts", shards, task_id="raise_alerts", outlets=[ALERTS_ASSET], pool=WAREHOUSE_POOL,
                                  doc_md="Applies the clinical rules (docs/clinical-rules.md) with recent history; upserts "
                                         "alerts; sends each notification once.")
        if shards > 1:
            raise_alerts >> step_task("alerts_sweep", shards=shards, pool=WAREHOUSE_POOL,
                                      doc_md="After every shard: silent devices, auto-resolution, escalation, notifications.")()

    checked_silver = raw() >> bronze() >> silver()
    warehouse_group = warehouse()
    # Alerts run beside the load, not after it: their history is what earlier minutes loaded (this
    # minute's readings come from silver), so a critical reading does not wait for the warehouse.
    checked_silver >> [gold(), warehouse_group, alerts()]


kidjamo_vitals()
