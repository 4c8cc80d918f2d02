"""
### kidjamo_notifications — alert notifications and escalations, every minute, whatever the batch does

The minute batch (`kidjamo_vitals`) raises alerts and sends their notifications at once; this DAG
does not depend on it. Every minute it escalates critical alerts left unacknowledged (5 and 15
minutes) and delivers every due notification, with retries: fast-path alerts raised by the
ingestion service are notified and escalated even while the batch is failing (a gate, the warehouse
load). Each notification is sent at most once per alert event, however many runs overlap.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from plugins.airflow_glue import DAG_ARGUMENTS, default_args, failure_notifiers, kidjamo_database_url


@dag(
    dag_id="kidjamo_notifications",
    schedule=CronDataIntervalTimetable("* * * * *", timezone="UTC"),
    **DAG_ARGUMENTS,  # catchup=False: the latest run escalates and delivers everything due, skipped minutes lose nothing
    dagrun_timeout=timedelta(minutes=2),
    doc_md=__doc__,
    tags=["kidjamo", "alerts"],
    default_args=default_args(retries=2, retry_delay=timedelta(seconds=5), execution_timeout=timedelta(seconds=50),
                              on_failure_callback=failure_notifiers()),
)
def kidjamo_notifications():
    @task(doc_md="Escalates unacknowledged critical alerts and delivers due notifications (webhook, SNS, log), once each.")
    def escalate_and_deliver() -> dict:
        from transforms.clinical.rules import default_rules
        from transforms.pipeline import escalate_and_deliver as run

        return run(kidjamo_database_url(), as_of=get_current_context()["data_interval_end"], rules=default_rules())

    escalate_and_deliver()


kidjamo_notifications()
