"""Great Expectations Data Docs for the gates, built from the validation results kept in the lake.

Minute runs validate in memory (fast) and keep each full result as JSON under
``quality/validations/<suite>/``; :func:`build_data_docs` loads the most recent ones into a
file-backed GX project under ``$KIDJAMO_HOME/gx`` and renders the static site there
(``kidjamo quality docs``; the maintenance DAG rebuilds it on a schedule).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from expectations import configure
from kidjamo.lake.storage import Lake

VALIDATIONS_PREFIX = "quality/validations"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)


def save_validation(lake: Lake, suite_name: str, interval_start: datetime, run_id: str, document: dict | None) -> str | None:
    """Keep one gate's full validation result in the lake (rewritten when the run is re-run).

    Names start with the interval, so that sorted names are in data order.
    """
    if document is None:
        return None
    path = f"{VALIDATIONS_PREFIX}/{suite_name}/{interval_start:%Y%m%dT%H%M}__{_safe(run_id)}.json"
    lake.write_bytes(path, json.dumps(document, default=str).encode())
    return path


def build_data_docs(lake: Lake, docs_root: Path, *, limit: int = 200) -> Path:
    """Render the Data Docs site for the last ``limit`` validations of each suite; return index.html."""
    configure()
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    docs_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(docs_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    schema = ExpectationSuiteValidationResultSchema()
    for suite_name in ("bronze", "silver"):
        files = lake.list_files(f"{VALIDATIONS_PREFIX}/{suite_name}")[-limit:]
        for lake_file in files:
            result = schema.load(json.loads(lake.read_bytes(lake_file.path)))
            run_name = Path(lake_file.path).stem
            key = ValidationResultIdentifier(ExpectationSuiteIdentifier(suite_name), RunIdentifier(run_name=run_name), "batch")
            context.validation_results_store.set(key, result)
    context.build_data_docs()
    return docs_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
