"""The bronze gate: what must hold of bronze rows before they may become silver."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from expectations import configure
from kidjamo.lake.schema import BRONZE, RANGES

if TYPE_CHECKING:
    import great_expectations as gx

SUITE_NAME = "bronze"
CLINICAL_VITALS = ("spo2", "heart_rate", "temperature", "respiratory_rate", "pain_scale")


def build_suite(interval_start: datetime, interval_end: datetime, *, lateness: timedelta,
                future_tolerance: timedelta) -> gx.ExpectationSuite:
    """The suite for arrival minutes [interval_start, interval_end)."""
    configure()
    import great_expectations as gx
    import great_expectations.expectations as gxe

    row = {"level": "row"}
    batch = {"level": "batch"}
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=BRONZE.names, exact_match=True, meta=batch),
        *[gxe.ExpectColumnValuesToNotBeNull(column=name, meta=row) for name in ("device_id", "patient_id", "measured_at")],
        # The vitals the alert rules act on, checked again after bronze's own range checks (a second
        # line of defence: the other ranges are bronze's and the warehouse's CHECK constraints).
        *[gxe.ExpectColumnValuesToBeBetween(column=name, min_value=RANGES[("vitals", name)][1],
                                            max_value=RANGES[("vitals", name)][2], meta=row)
          for name in CLINICAL_VITALS],
        # Timestamps as Timestamps: GX compares a date bound wrongly and silently passes.
        gxe.ExpectColumnValuesToBeBetween(
            column="measured_at",
            min_value=pd.Timestamp(interval_start - lateness),
            max_value=pd.Timestamp(interval_end + future_tolerance),
            meta=row,
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="arrival_minute", min_value=pd.Timestamp(interval_start),
            max_value=pd.Timestamp(interval_end - timedelta(minutes=1)), meta=batch,
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["raw_file", "record_index"], meta=batch),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
