"""Airflow notifier for pipeline failures (not patient alerts), through the alert channels.

Put it in a DAG's ``default_args`` or on a task::

    from plugins.notifiers import PipelineFailureNotifier
    default_args = {"on_failure_callback": PipelineFailureNotifier()}

It sends one JSON document (``kind: kidjamo.pipeline_failure``: DAG, run, task, try, data
interval, the exception and the log URL) to every channel of ``KIDJAMO_NOTIFY_CHANNELS``. Webhook
and SNS go to the on-call targets: the escalation webhook/topic when set, else the care-team one
(see ``kidjamo/notify.py``), unless the constructor names other targets. Each channel is tried a
few times with backoff; a channel that still fails is logged and never hides the task's own error.
"""

from __future__ import annotations

from airflow.sdk import BaseNotifier
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kidjamo import notify
from kidjamo.settings import Settings, get_settings


class PipelineFailureNotifier(BaseNotifier):
    """Report a failed task or DAG run on the webhook, SNS and log channels.

    :param channels: comma-separated channels (default: ``KIDJAMO_NOTIFY_CHANNELS``).
    :param webhook_url: webhook to POST to (default: the escalation webhook, else the care-team one).
    :param sns_topic_arn: SNS topic (default: the escalation topic, else the care-team one).
    :param attempts: tries per channel, with exponential backoff.
    """

    template_fields = ("webhook_url", "sns_topic_arn")

    def __init__(self, *, channels: str | None = None, webhook_url: str | None = None,
                 sns_topic_arn: str | None = None, attempts: int = 3, settings: Settings | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.webhook_url = webhook_url
        self.sns_topic_arn = sns_topic_arn
        self.attempts = attempts
        self._settings = settings

    def document(self, context) -> dict:
        """The JSON document describing the failure."""
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        exception = context.get("exception")
        return {
            "kind": "kidjamo.pipeline_failure",
            "dag_id": getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None),
            "run_id": getattr(dag_run, "run_id", None) or context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "try_number": getattr(ti, "try_number", None),
            "map_index": getattr(ti, "map_index", None),
            "data_interval_start": context.get("data_interval_start"),
            "data_interval_end": context.get("data_interval_end"),
            "logical_date": context.get("logical_date"),
            "exception": f"{type(exception).__name__}: {exception}" if exception else context.get("reason"),
            "log_url": getattr(ti, "log_url", None),
        }

    def notify(self, context) -> None:
        settings = self._settings or get_settings()
        if self.channels is not None:
            settings = settings.model_copy(update={"notify_channels": self.channels})
        document = self.document(context)
        delivery_id = f"pipeline:{document['dag_id']}:{document['run_id']}:{document['task_id']}:{document['try_number']}"
        subject = f"[PIPELINE FAILED] {document['dag_id']}.{document['task_id']} {document['run_id']}"
        for channel in notify.configured_channels(settings):
            target = notify.target(channel, "escalation", settings)
            override = {"webhook": self.webhook_url, "sns": self.sns_topic_arn}.get(channel)
            if override:
                target = notify.Target(channel, override)
            try:
                for attempt in Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=2),
                                        retry=retry_if_exception_type(notify.DeliveryError), reraise=True):
                    with attempt:
                        notify.deliver(target, document, subject=subject, delivery_id=delivery_id,
                                       group_id="kidjamo-pipeline", settings=settings)
            except notify.DeliveryError as error:
                self.log.error("pipeline failure notification on %s not delivered: %s", channel, error)
