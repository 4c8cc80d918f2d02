"""OpenLineage for the Kidjamo DAGs: which lake layers and warehouse tables each task reads and writes.

Airflow's OpenLineage provider emits a START and a COMPLETE (or FAIL) event per task; it cannot see
inside a Python task, so :class:`KidjamoTaskExtractor` (registered with ``[openlineage] extractors``
by ``kidjamo.cli.airflow_env``) answers for the TaskFlow tasks: it looks the task up in
:data:`STEP_LINEAGE` and names the datasets after the deployment it runs in, following the
OpenLineage naming spec — a lake layer is ``file`` + the layer's absolute path (local lake) or
``s3://bucket`` + key prefix (S3), a warehouse table is ``postgres://host:port`` +
``database.schema.table``. Where the events go is the transport (``KIDJAMO_OPENLINEAGE_*``
settings): a file under ``$KIDJAMO_HOME/lineage`` by default, the console, or Marquez over HTTP.
"""

from __future__ import annotations

from urllib.parse import urlparse

from airflow.providers.openlineage.extractors.base import OperatorLineage
from airflow.providers.openlineage.extractors.python import PythonExtractor
from openlineage.client.event_v2 import Dataset

from transforms.views import LIGHT_VIEWS

#: Lake datasets (layer prefixes) and warehouse tables read and written by each step, keyed by task id
#: without its group (``silver.to_silver`` -> ``to_silver``).
STEP_LINEAGE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "to_raw": (("lake:landing/vitals",), ("lake:raw/vitals",)),
    "to_bronze": (("lake:raw/vitals", "kidjamo.patients", "kidjamo.devices"), ("lake:bronze/vitals", "lake:quarantine/vitals")),
    "gate_bronze": (("lake:bronze/vitals", "lake:quarantine/vitals"),
                    ("lake:gates/vitals", "lake:quality/validations", "kidjamo.data_quality_results")),
    "to_silver": (("lake:bronze/vitals", "lake:gates/vitals", "kidjamo.patients", "kidjamo.devices", "kidjamo.measurements",
                   "kidjamo.patient_baselines"), ("lake:silver/vitals", "lake:quarantine/vitals")),
    "gate_silver": (("lake:raw/vitals", "lake:bronze/vitals", "lake:silver/vitals", "lake:quarantine/vitals"),
                    ("lake:silver/vitals", "lake:quarantine/vitals", "lake:quality/validations", "kidjamo.data_quality_results")),
    "to_gold": (("lake:silver/vitals",), ("lake:gold/vitals",)),
    "load": (("lake:silver/vitals", "lake:quarantine/vitals"), ("kidjamo.measurements", "kidjamo.quarantine")),
    "refresh_views": (("kidjamo.measurements", "kidjamo.quarantine", "kidjamo.devices"),
                      tuple(f"analytics.{view}" for view in LIGHT_VIEWS)),
    "raise_alerts": (("lake:silver/vitals", "kidjamo.measurements", "kidjamo.patient_baselines", "kidjamo.alerts"),
                     ("kidjamo.alerts", "kidjamo.alert_readings", "kidjamo.alert_events", "kidjamo.notifications",
                      "lake:gold/vitals")),
    "reprocess": (("lake:raw/vitals", "kidjamo.patients", "kidjamo.devices"),
                  ("lake:bronze/vitals", "lake:quarantine/vitals", "lake:silver/vitals", "lake:gold/vitals",
                   "kidjamo.measurements", "kidjamo.quarantine", "kidjamo.alerts")),
}


def lake_dataset(lake_uri: str) -> Dataset:
    """An OpenLineage dataset of a lake location (``file:///…`` or ``s3://bucket/…``)."""
    parsed = urlparse(lake_uri)
    if parsed.scheme == "s3":
        return Dataset(namespace=f"s3://{parsed.netloc}", name=parsed.path.lstrip("/"))
    return Dataset(namespace="file", name=parsed.path)


def table_dataset(database_url: str, table: str) -> Dataset:
    """An OpenLineage dataset of a warehouse table (``postgres://host:port``, ``database.schema.table``)."""
    parsed = urlparse(database_url)
    database = parsed.path.lstrip("/") or "postgres"
    return Dataset(namespace=f"postgres://{parsed.hostname}:{parsed.port or 5432}", name=f"{database}.{table}")


def step_datasets(step: str, lake, database_url: str | None) -> tuple[list[Dataset], list[Dataset]]:
    """The input and output datasets of a step in this deployment (empty for a step not listed)."""
    inputs, outputs = STEP_LINEAGE.get(step, ((), ()))

    def resolve(names: tuple[str, ...]) -> list[Dataset]:
        datasets = []
        for name in names:
            if name.startswith("lake:"):
                datasets.append(lake_dataset(lake.uri(name.removeprefix("lake:"))))
            elif database_url:
                datasets.append(table_dataset(database_url, name))
        return datasets

    return resolve(inputs), resolve(outputs)


class KidjamoTaskExtractor(PythonExtractor):
    """The Python extractor's source-code facet, plus the datasets of :data:`STEP_LINEAGE`."""

    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return ["PythonOperator", "_PythonDecoratedOperator"]

    def _execute_extraction(self) -> OperatorLineage | None:
        from plugins.airflow_glue import kidjamo_database_url, kidjamo_lake

        lineage = super()._execute_extraction() or OperatorLineage()
        step = self.operator.task_id.rsplit(".", 1)[-1]
        if step in STEP_LINEAGE:
            lineage.inputs, lineage.outputs = step_datasets(step, kidjamo_lake(), kidjamo_database_url())
        return lineage

    def extract_on_complete(self, task_instance) -> OperatorLineage | None:
        return self._execute_extraction()
