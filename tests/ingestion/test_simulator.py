"""The simulated fleet: registry, cadence, determinism, physiology envelope, scenarios, landing files."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from ingestion.simulator.fleet import REGISTRY_COLUMNS, SCENARIO_KINDS, Fleet, Scenario
from ingestion.simulator.payloads import landing_ndjson, table_ndjson, write_landing

START = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.generate(60, seed=7)


def test_registry_csv_has_the_contract_columns_and_one_device_per_patient(fleet: Fleet, tmp_path):
    path = fleet.write_registry_csv(tmp_path / "registry.csv")
    with path.open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == REGISTRY_COLUMNS
    assert len(rows) == 60 and len({row["device_id"] for row in rows}) == 60
    assert rows[0]["patient_id"] == "patient-000001" and rows[0]["device_id"] == "device-000001"
    assert {row["genotype"] for row in rows} <= {"HbSS", "HbSC", "HbSB0", "HbSB+"}
    assert {row["sex"] for row in rows} <= {"F", "M", "X"}


def test_fleet_mixes_infants_children_and_adults():
    fleet = Fleet.generate(500, seed=1)
    ages = fleet.age_days / 365.25
    assert (ages < 1).any() and ((ages > 1) & (ages < 12)).any() and (ages >= 16).any()
    assert len(set(fleet.genotypes)) == 4


def test_every_device_sends_one_reading_every_30_seconds(fleet: Fleet):
    readings = fleet.readings(START, START + timedelta(minutes=5))
    per_device = Counter(reading["device_id"] for reading in readings)
    assert set(per_device.values()) == {10}
    assert all(START.strftime("%Y-%m-%dT%H") in r["timestamp"] for r in readings)
    assert len({r["message_id"] for r in readings}) == len(readings)


def test_readings_are_deterministic_and_independent_of_the_window(fleet: Fleet):
    hour = fleet.readings(START, START + timedelta(minutes=60))
    again = Fleet.generate(60, seed=7, reference_date=fleet.reference_date).readings(START + timedelta(minutes=17), START + timedelta(minutes=18))
    by_id = {reading["message_id"]: reading for reading in hour}
    assert again and all(by_id[reading["message_id"]] == reading for reading in again)
    assert Fleet.generate(60, seed=8).readings(START, START + timedelta(minutes=1)) != hour[: len(again)]


def test_normal_readings_stay_inside_every_alert_threshold():
    fleet = Fleet.generate(300, seed=3)
    readings = fleet.readings(START, START + timedelta(hours=24), scenarios=())
    vitals = [r["vitals"] for r in readings]
    assert min(v["spo2"] for v in vitals) > 94.0
    assert max(v["temperature"] for v in vitals) < 37.8 and min(v["temperature"] for v in vitals) > 35.0
    assert 10 < min(v["ambient_temp"] for v in vitals) and max(v["ambient_temp"] for v in vitals) < 32
    assert max(v["pain_scale"] for v in vitals) < 7 and max(v["activity_level"] for v in vitals) < 6
    assert min(r["metadata"]["battery_level"] for r in readings) >= 15
    index = {pid: i for i, pid in enumerate(fleet.patient_ids)}
    for reading in readings:
        i = index[reading["patient_id"]]
        assert fleet.hr_low[i] <= reading["vitals"]["heart_rate"] <= fleet.hr_high[i]
        assert fleet.rr_low[i] <= reading["vitals"]["respiratory_rate"] <= fleet.rr_high[i]
        assert reading["vitals"]["spo2"] >= fleet.spo2_base[i] - 1.5


def test_hypoxia_patient_is_below_85_for_the_whole_window(fleet: Fleet):
    readings = fleet.readings(START, START + timedelta(minutes=3), hypoxia_patient=True)
    first = [r["vitals"]["spo2"] for r in readings if r["patient_id"] == fleet.patient_ids[0]]
    others = [r["vitals"]["spo2"] for r in readings if r["patient_id"] != fleet.patient_ids[0]]
    assert len(first) == 6 and max(first) < 85
    assert min(others) > 94


@pytest.mark.parametrize(
    "kind, check",
    [
        ("hypoxia", lambda rs: rs[-1]["vitals"]["spo2"] < 85),
        ("fever", lambda rs: rs[-1]["vitals"]["temperature"] >= 39.0),
        ("acs", lambda rs: all(r["vitals"]["temperature"] > 38.5 and r["vitals"]["pain_scale"] == 6 for r in rs)),
        ("pain_crisis", lambda rs: all(r["vitals"]["pain_scale"] >= 7 for r in rs)),
        ("heat_dehydration", lambda rs: all(r["vitals"]["ambient_temp"] >= 32 and r["vitals"]["activity_level"] >= 6 for r in rs)),
        ("flatline", lambda rs: len({(r["vitals"]["spo2"], r["vitals"]["heart_rate"]) for r in rs}) == 1),
        ("low_battery", lambda rs: all(r["metadata"]["battery_level"] < 15 for r in rs)),
        ("dropout", lambda rs: rs == []),
        ("clock_skew", lambda rs: all(r["timestamp"] >= (START + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ") for r in rs)),
        ("duplicates", lambda rs: len(rs) == 2 * len({r["message_id"] for r in rs})),
        ("malformed", lambda rs: all("timestamp" not in r or not isinstance(r["vitals"], dict) or isinstance(r["vitals"]["spo2"], str)
                                     or r["vitals"]["heart_rate"] < 0 or not r["timestamp"][0].isdigit() for r in rs)),
    ],
)
def test_scenario_changes_only_its_patient_and_window(fleet: Fleet, kind, check):
    patient_id = fleet.patient_ids[4]
    scenario = Scenario(kind, patient_id, START, START + timedelta(minutes=15))
    readings = fleet.readings(START, START + timedelta(minutes=15), scenarios=[scenario])
    baseline = fleet.readings(START, START + timedelta(minutes=15))
    assert check([r for r in readings if r["patient_id"] == patient_id])
    assert [r for r in readings if r["patient_id"] != patient_id] == [r for r in baseline if r["patient_id"] != patient_id]


def test_every_scenario_kind_is_covered_and_unknown_kinds_are_refused():
    assert len(SCENARIO_KINDS) >= 11
    with pytest.raises(ValueError, match="unknown scenario"):
        Scenario("meteor", "patient-000001", START, START + timedelta(minutes=1))


def test_write_landing_puts_one_ndjson_file_in_the_arrival_minute_partition(fleet: Fleet, lake):
    readings = fleet.readings(START, START + timedelta(minutes=1))
    path = write_landing(lake, START + timedelta(seconds=42), readings, name="batch-1")
    assert path == "landing/vitals/dt=2026-11-27/hh=10/mm=00/batch-1.ndjson"
    lines = lake.read_bytes(path).decode().splitlines()
    assert [json.loads(line) for line in lines] == readings
    assert [f.path for f in lake.list_files("landing")] == [path]


def test_write_landing_gzips_when_asked(fleet: Fleet, lake):
    readings = fleet.readings(START, START + timedelta(minutes=1))
    path = write_landing(lake, START, readings, compress=True)
    assert path.endswith(".ndjson.gz")
    assert gzip.decompress(lake.read_bytes(path)) == landing_ndjson(readings)


def test_fast_ndjson_path_matches_the_payloads(fleet: Fleet):
    table = fleet.readings_table(START, START + timedelta(minutes=2))
    assert table_ndjson(fleet, table) == landing_ndjson(fleet.readings(START, START + timedelta(minutes=2)))
