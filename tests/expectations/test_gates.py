"""The Great Expectations gates: row failures go to quarantine, batch failures stop the run, results are kept."""

from datetime import timedelta

import pandas as pd
import pytest

from expectations import bronze as bronze_suite
from expectations.data_docs import build_data_docs, save_validation
from expectations.gate import GateFailed, flooding_devices, raise_on_failure, run_gate
from ingestion.to_raw import landing_to_raw
from transforms.bronze import raw_to_bronze
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registry


def _bronze_frame(lake, count=4) -> pd.DataFrame:
    land(lake, "batch.ndjson", [payload(i) for i in range(1, count + 1)])
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    return raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r1", registry=registry(), ingested_at=NEXT).bronze.to_pandas()


def _suite():
    return bronze_suite.build_suite(ARRIVAL, NEXT, lateness=timedelta(days=7), future_tolerance=timedelta(minutes=5))


def test_clean_batch_passes(lake):
    result = run_gate(_suite(), _bronze_frame(lake))
    assert result.success and result.rejected.num_rows == 0
    assert result.statistics["evaluated_expectations"] == len(_suite().expectations)


def test_row_failure_sets_the_row_aside_with_the_expectation_named(lake):
    frame = _bronze_frame(lake)
    frame.loc[2, "spo2"] = 140.0  # past bronze's own check: the gate is the second line of defence
    result = run_gate(_suite(), frame)
    assert result.success
    rejected = result.rejected.to_pylist()
    assert [(r["record_index"]) for r in rejected] == [2]
    assert "spo2=140.0" in rejected[0]["detail"] and "expect_column_values_to_be_between" in rejected[0]["detail"]


def test_schema_drift_fails_the_batch_saying_what_was_expected(lake):
    frame = _bronze_frame(lake).drop(columns=["firmware_version"])
    result = run_gate(_suite(), frame)
    with pytest.raises(GateFailed, match="expect_table_columns_to_match_set"):
        raise_on_failure(result)


def test_a_flood_of_bad_rows_is_judged_per_device_not_per_batch():
    devices = pd.Series(["device-1"] * 12 + ["device-2"] * 3 + [None] * 30)
    is_bad = pd.Series([True] * 11 + [False] + [False] * 3 + [True] * 30)
    reason = pd.Series(["out_of_range"] * 11 + [None] * 4 + ["invalid_json"] * 30)
    flooding = flooding_devices(devices, is_bad, reason, max_bad_share=0.5, min_bad=10)
    assert flooding["device_id"].tolist() == ["device-1"]
    assert flooding.iloc[0][["readings", "bad_readings"]].tolist() == [12, 11]
    assert flooding.iloc[0]["reasons"] == {"out_of_range": 11}


def test_validation_results_render_as_data_docs(lake, tmp_path):
    result = run_gate(_suite(), _bronze_frame(lake))
    save_validation(lake, result.suite, ARRIVAL, "manual__2026-11-27T15:32:00+00:00", result.document)
    index = build_data_docs(lake, tmp_path / "gx")
    assert index.exists()
    pages = list(index.parent.glob("validations/bronze/**/*.html"))
    assert len(pages) == 1
    assert "spo2" in pages[0].read_text()
    assert "bronze" in index.read_text()
