"""Bronze -> silver: deduplication within and across batches, replays, enrichment and flags."""

import pandas as pd
import pyarrow as pa

from ingestion.to_raw import landing_to_raw
from transforms.bronze import raw_to_bronze
from transforms.clinical.baselines import genotype_default_spo2
from transforms.pipeline import GATE_REJECTED_SCHEMA
from transforms.silver import LOADED_COLUMNS, bronze_to_silver, loaded_readings
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, register_devices, registry
from transforms.clinical.rules import default_rules

NO_REJECTS = GATE_REJECTED_SCHEMA.empty_table()
NOTHING_LOADED = pd.DataFrame(columns=LOADED_COLUMNS)

RULES = default_rules()


def _baselines(reg: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": reg["patient_id"], "spo2_baseline": genotype_default_spo2(reg["genotype"], RULES),
        "heart_rate_baseline": 85.0, "temperature_baseline": 36.8, "hydration_baseline": 80.0,
    })


def _bronze(lake, lines):
    land(lake, "batch.ndjson", lines)
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    return raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r1", registry=registry(), ingested_at=NEXT).bronze


def _silver(bronze, loaded=NOTHING_LOADED, rejected=NO_REJECTS):
    reg = registry()
    return bronze_to_silver(bronze, registry=reg, baselines=_baselines(reg), loaded=loaded, gate_rejected=rejected, run_id="r1", rules=RULES)


def test_second_copy_in_a_batch_is_a_duplicate_pointing_at_the_first(lake):
    result = _silver(_bronze(lake, [payload(1), payload(1, message_id="resend")]))
    assert (result.silver.num_rows, result.duplicates_in_batch) == (1, 1)
    quarantined = result.rejected.to_pylist()[0]
    assert quarantined["reason"] == "duplicate" and quarantined["record_index"] == 1
    assert "record 0" in quarantined["detail"]


def test_reading_already_loaded_from_another_record_is_a_duplicate(lake):
    bronze = _bronze(lake, [payload(1)])
    row = bronze.to_pylist()[0]
    loaded = pd.DataFrame({"device_id": ["device-1"], "measured_at": [pd.Timestamp("2026-11-27T15:30:30Z")],
                           "raw_file": [row["raw_file"]], "record_index": [row["record_index"]],
                           "loaded_raw_file": ["raw/vitals/dt=2026-11-27/hh=15/mm=30/earlier.ndjson"],
                           "loaded_record_index": [4]})
    result = _silver(bronze, loaded=loaded)
    assert (result.silver.num_rows, result.duplicates_of_earlier) == (0, 1)
    assert "duplicate of raw/vitals/dt=2026-11-27/hh=15/mm=30/earlier.ndjson record 4" in result.rejected.to_pylist()[0]["detail"]


def test_warehouse_lookup_returns_other_records_only(lake, fresh_database_url):
    from transforms.load import load_measurements

    register_devices(fresh_database_url, lake.local_path("registry.csv"), 2)
    bronze = _bronze(lake, [payload(1), payload(2)])
    load_measurements(fresh_database_url, _silver(bronze).silver, "r1")
    assert loaded_readings(fresh_database_url, bronze).empty  # the same records replayed: not duplicates
    moved = bronze.set_column(bronze.schema.get_field_index("record_index"), "record_index",
                              pa.array([7, 8], pa.int32()))
    found = loaded_readings(fresh_database_url, moved)
    assert sorted(found["record_index"]) == [7, 8] and sorted(found["loaded_record_index"]) == [0, 1]


def test_warehouse_lookup_finds_a_late_copy_older_than_the_device_latest_reading(lake, fresh_database_url):
    from transforms.load import load_measurements

    register_devices(fresh_database_url, lake.local_path("registry.csv"), 1)
    bronze = _bronze(lake, [payload(1, timestamp="2026-11-27T15:30:00Z", message_id="a"),
                            payload(1, timestamp="2026-11-27T15:30:30Z", message_id="b")])
    load_measurements(fresh_database_url, _silver(bronze).silver, "r1")
    late_copy = bronze.slice(0, 1).set_column(bronze.schema.get_field_index("record_index"), "record_index",
                                              pa.array([9], pa.int32()))
    found = loaded_readings(fresh_database_url, late_copy)
    assert found[["record_index", "loaded_record_index"]].values.tolist() == [[9, 0]]


def test_gate_rejected_rows_are_quarantined_with_the_gate_detail(lake):
    bronze = _bronze(lake, [payload(1), payload(2)])
    row = bronze.to_pylist()[1]
    rejected = pa.Table.from_pylist([{"raw_file": row["raw_file"], "record_index": row["record_index"],
                                      "detail": "bronze gate: nope", "arrival_minute": ARRIVAL}], schema=GATE_REJECTED_SCHEMA)
    result = _silver(bronze, rejected=rejected)
    assert result.silver.column("device_id").to_pylist() == ["device-1"]
    assert [(r["reason"], r["detail"]) for r in result.rejected.to_pylist()] == [("gate_rejected", "bronze gate: nope")]


def test_enrichment_adds_age_band_baseline_scores_and_flags(lake):
    low = payload(1, vitals__spo2=65.0, metadata__battery_level=10, metadata__signal_quality=30)
    result = _silver(_bronze(lake, [low, payload(2)]))
    first, second = result.silver.to_pylist()
    assert first["age_band"] == "4-12y" and 11 < first["age_years"] < 12
    assert first["genotype"] == "HbSS" and first["spo2_baseline"] == 96.0 and first["care_team"] == "team-a"
    assert first["spo2_low_confidence"] and first["low_battery"] and first["weak_signal"]
    assert not (second["spo2_low_confidence"] or second["low_battery"] or second["weak_signal"])
    assert first["news2_partial"] is None  # NEWS2 is for adults
    assert first["heat_index_c"] is None and first["heat_index_unknown"]  # no humidity: heat index unknown
    assert first["delay_seconds"] == 30.0 and not first["is_late"]


def test_a_reading_buffered_for_hours_keeps_its_time_and_is_marked_late(lake):
    result = _silver(_bronze(lake, [payload(1, timestamp="2026-11-27T09:30:30Z")]))
    row = result.silver.to_pylist()[0]
    assert row["measured_at"].isoformat() == "2026-11-27T09:30:30+00:00"
    assert row["is_late"] and row["delay_seconds"] == 6 * 3600 + 30
