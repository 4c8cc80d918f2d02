"""
### kidjamo_reprocess — re-process an interval of arrival minutes from raw, in one run

Trigger it by hand (**Trigger** button) with `start` and `end`, UTC instants on minute boundaries,
e.g. `2026-11-26T00:00:00+00:00` and `2026-11-27T00:00:00+00:00` for a whole day. It re-reads the
raw layer (the byte-exact replay source) for arrival minutes **[start, end)** and rewrites bronze,
quarantine, silver, gold, the warehouse rows and the alerts of those minutes with the current
code, exactly as the minute runs would have, in **one** run (a day does not pay 1,440 runs'
overhead). It is idempotent: re-processing the same interval twice gives the same result.

The trigger form checks that both values are ISO 8601 date-times with a time zone, and rejects
an interval whose `end` is not after its `start` with the reason, creating no run (the
`kidjamo_trigger_checks` plugin). The first task, `validate_interval`, checks again for runs
created any other way and fails at once, with the reason. The counts of every step are the XCom of `reprocess`
and rows of `kidjamo.pipeline_runs` under this run's id.

Use it after fixing a bug in a layer step or the registry, or to replay a day quarantined by
mistake. For a few minutes, clearing the `kidjamo_vitals` runs or a backfill works as well.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from plugins.airflow_glue import (
    DAG_ARGUMENTS, LAYER_ASSETS, WAREHOUSE_ASSET, WAREHOUSE_POOL, default_args, failure_notifiers, kidjamo_database_url,
    kidjamo_lake,
)


@dag(
    dag_id="kidjamo_reprocess",
    schedule=None,
    **DAG_ARGUMENTS,
    doc_md=__doc__,
    tags=["kidjamo", "vitals", "reprocess"],
    params={
        "start": Param(
            type="string", format="date-time", title="start (inclusive)",
            description="First arrival minute to re-process, UTC, e.g. 2026-11-26T00:00:00+00:00",
        ),
        "end": Param(
            type="string", format="date-time", title="end (exclusive)",
            description="End of the interval, after start, e.g. 2026-11-27T00:00:00+00:00 (at most 7 days after start)",
        ),
    },
    default_args=default_args(retries=0),
    on_failure_callback=failure_notifiers(),
)
def kidjamo_reprocess():
    @task(doc_md="Checks that `start` and `end` are UTC minute boundaries with start < end (and at most 7 days apart).")
    def validate_interval() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from transforms.pipeline import parse_interval

        params = get_current_context()["params"]
        try:
            start, end = parse_interval(params["start"], params["end"])
        except ValueError as problem:
            # Not retried: the same params would fail the same way.
            raise AirflowFailException(f"Invalid interval: {problem}") from None
        return {"start": start.isoformat(), "end": end.isoformat(), "minutes": int((end - start) / timedelta(minutes=1))}

    # The assets kidjamo_vitals emits too: downstream DAGs react to re-processed data as to new data.
    @task(outlets=[LAYER_ASSETS["gold"], WAREHOUSE_ASSET], execution_timeout=timedelta(hours=2), retries=1, pool=WAREHOUSE_POOL,
          retry_delay=timedelta(minutes=1),
          doc_md="Runs every pipeline step over [start, end) from raw in this one task (transforms.pipeline.process_interval).")
    def reprocess(interval: dict) -> dict:
        from transforms.pipeline import process_interval

        return process_interval(
            datetime.fromisoformat(interval["start"]), datetime.fromisoformat(interval["end"]),
            lake=kidjamo_lake(), database_url=kidjamo_database_url(), run_id=get_current_context()["run_id"],
        )

    reprocess(validate_interval())


kidjamo_reprocess()
