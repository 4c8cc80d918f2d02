"""Raw -> bronze: one typed row per reading, or one quarantine row with a reason, field and detail."""

import json

import pytest

from ingestion.to_raw import landing_to_raw
from transforms.bronze import raw_to_bronze
from tests.layers.helpers import ARRIVAL, NEXT, land, payload, registry


def _bronze(lake, lines, **kwargs):
    land(lake, "batch.ndjson", lines)
    landing_to_raw(lake, ARRIVAL, NEXT, run_id="r1")
    return raw_to_bronze(lake, ARRIVAL, NEXT, run_id="r1", registry=registry(), ingested_at=NEXT, **kwargs)


def _only_quarantined(lake, line):
    result = _bronze(lake, [payload(1), line])
    assert result.bronze.num_rows == 1, result.quarantine.to_pylist()
    rows = result.quarantine.to_pylist()
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize(
    ("line", "reason", "field", "detail_part"),
    [
        ("{not json", "invalid_json", None, "not valid JSON"),
        ("[1, 2]", "not_an_object", None, "got an array"),
        (json.dumps({k: v for k, v in payload(2).items() if k != "timestamp"}), "missing_field", "timestamp", "required"),
        (json.dumps(payload(2, device_id=7)), "wrong_type", "device_id", "expected a string, got a number"),
        (json.dumps(payload(2, timestamp="27/11/2026 15:30")), "bad_timestamp", "timestamp", "ISO-8601"),
        (json.dumps(payload(2, timestamp="2026-11-27T15:30:30")), "bad_timestamp", "timestamp", "time zone"),
        (json.dumps(payload(2, timestamp="2026-11-27T15:37:01Z")), "future_timestamp", "timestamp", "after the file arrived"),
        (json.dumps(payload(2, timestamp="2026-11-20T15:30:00Z")), "too_late", "timestamp", "lateness limit"),
        (json.dumps(payload(9)), "unknown_device", "device_id", "device-9"),
        (json.dumps(payload(2, patient_id="patient-3")), "device_patient_mismatch", "patient_id", "belongs to 'patient-2'"),
    ],
)
def test_each_reason_code_names_the_field_and_what_was_expected(lake, line, reason, field, detail_part):
    row = _only_quarantined(lake, line)
    assert (row["reason"], row["field"]) == (reason, field)
    assert detail_part in row["detail"]
    assert row["original_text"] == line
    assert row["raw_file"].endswith("batch.ndjson") and row["record_index"] == 1


@pytest.mark.parametrize(
    ("changes", "reason", "field", "detail_part"),
    [
        (dict(vitals__spo2="low"), "wrong_type", "vitals.spo2", "expected a number, got a string"),
        (dict(vitals__pain_scale=2.5), "wrong_type", "vitals.pain_scale", "expected an integer"),
        (dict(vitals__spo2=101), "out_of_range", "vitals.spo2", "outside the plausible range 50 to 100"),
        (dict(vitals__respiratory_rate=121), "out_of_range", "vitals.respiratory_rate", "4 to 120"),
        (dict(metadata__battery_level=-1), "out_of_range", "metadata.battery_level", "0 to 100"),
        (dict(vitals__ambient_temp=75), "out_of_range", "vitals.ambient_temp", "-40 to 60"),
    ],
)
def test_one_bad_field_empties_that_field_and_keeps_the_reading(lake, changes, reason, field, detail_part):
    line = json.dumps(payload(2, **changes))
    result = _bronze(lake, [payload(1), line])
    assert (result.bronze.num_rows, result.quarantine.num_rows) == (2, 0)
    kept = result.bronze.to_pylist()[1]
    assert kept[field.split(".")[1]] is None
    assert (kept["temperature"], kept["heart_rate"]) == (36.8, 80.0)  # the valid vitals stay
    (row,) = result.field_quarantine.to_pylist()
    assert (row["layer"], row["reason"], row["field"]) == ("bronze_field", reason, field)
    assert detail_part in row["detail"] and "the reading is kept" in row["detail"]
    assert row["original_text"] == line and row["record_index"] == 1


def test_two_bad_fields_are_one_quarantine_row_naming_both(lake):
    result = _bronze(lake, [payload(1, vitals__spo2=30, metadata__signal_quality=140)])
    (row,) = result.field_quarantine.to_pylist()
    assert row["field"] == "vitals.spo2, metadata.signal_quality"
    assert result.bronze.to_pylist()[0]["temperature"] == 36.8


def test_a_reading_without_spo2_keeps_its_temperature(lake):
    reading = payload(1)
    del reading["vitals"]["spo2"]
    result = _bronze(lake, [reading])
    (kept,) = result.bronze.to_pylist()
    assert kept["spo2"] is None and kept["temperature"] == 36.8
    assert result.quarantine.num_rows == result.field_quarantine.num_rows == 0


def test_a_reading_within_five_minutes_ahead_is_accepted(lake):
    result = _bronze(lake, [payload(1, timestamp="2026-11-27T15:36:59Z")])
    assert (result.bronze.num_rows, result.quarantine.num_rows) == (1, 0)


def test_optional_fields_may_be_absent(lake):
    reading = payload(1)
    del reading["metadata"]
    del reading["vitals"]["ambient_temp"]
    result = _bronze(lake, [reading])
    assert result.bronze.num_rows == 1
    assert result.bronze.column("ambient_temp").to_pylist() == [None]


def test_typed_row_carries_lineage_and_values(lake):
    result = _bronze(lake, [payload(1), payload(2)])
    row = result.bronze.to_pylist()[1]
    assert row["device_id"] == "device-2" and row["spo2"] == 97.0 and row["activity_level"] == 3
    assert row["raw_file"].startswith("raw/vitals/dt=2026-11-27/hh=15/mm=31/") and row["record_index"] == 1
    assert len(row["record_hash"]) == 64 and row["arrival_minute"] == ARRIVAL
    assert row["measured_at"].isoformat() == "2026-11-27T15:30:30+00:00"


def test_unknown_fields_are_counted_and_kept_in_raw(lake):
    reading = payload(1, colour="blue")
    reading["vitals"]["glucose"] = 5.4
    result = _bronze(lake, [reading])
    assert result.bronze.column("extra_fields").to_pylist() == [2]
    assert result.counts()["extra_fields"] == 2


def test_a_file_that_is_not_json_is_quarantined_line_by_line(lake):
    result = _bronze(lake, ["hello", "world", "!"])
    assert result.bronze.num_rows == 0
    assert [r["reason"] for r in result.quarantine.to_pylist()] == ["invalid_json"] * 3


def test_fast_and_per_record_paths_agree(lake, tmp_path):
    from kidjamo.lake.storage import Lake

    good = [payload(i) for i in range(1, 5)]
    clean = _bronze(lake, good)
    mixed_lake = Lake(f"file://{tmp_path / 'mixed'}")
    mixed = _bronze(mixed_lake, [*good, "{broken"])  # one bad line sends the file down the per-record path
    assert clean.fast_path_records == 4 and mixed.fast_path_records == 0
    drop = ["ingested_at", "raw_file", "record_hash"]
    assert clean.bronze.drop(drop).to_pylist() == mixed.bronze.drop(drop).to_pylist()
