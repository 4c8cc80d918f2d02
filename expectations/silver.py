"""The silver gate: what must hold of silver rows before they may become gold and reach the warehouse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations import configure
from kidjamo.lake.schema import SILVER

if TYPE_CHECKING:
    import great_expectations as gx

SUITE_NAME = "silver"
AGE_BANDS = ["0-3m", "3-12m", "1-4y", "4-12y", ">12y"]


def build_suite() -> gx.ExpectationSuite:
    """The suite for a batch of silver rows."""
    configure()
    import great_expectations as gx
    import great_expectations.expectations as gxe

    row = {"level": "row"}
    batch = {"level": "batch"}
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=SILVER.names, exact_match=True, meta=batch),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["device_id", "measured_at"], meta=batch),
        gxe.ExpectColumnValuesToNotBeNull(column="age_band", meta=row),
        gxe.ExpectColumnValuesToBeInSet(column="age_band", value_set=AGE_BANDS, meta=row),
        gxe.ExpectColumnValuesToNotBeNull(column="spo2_baseline", meta=row),
        gxe.ExpectColumnValuesToBeBetween(column="spo2_baseline", min_value=50, max_value=100, meta=row),
        gxe.ExpectColumnValuesToBeBetween(column="age_years", min_value=0, max_value=120, meta=row),
        gxe.ExpectColumnValuesToBeBetween(column="news2_partial", min_value=0, max_value=20, meta=row),
        gxe.ExpectColumnValuesToBeBetween(column="heat_index_c", min_value=-60, max_value=90, meta=row),
        gxe.ExpectColumnValuesToBeBetween(column="physiological_strain_index", min_value=-20, max_value=20, meta=row),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
