"""A reading that lacks a vital keeps the others, and the rules judge them (issue 11: "A reading without
SpO2 keeps its temperature"), through the whole pipeline (``process_interval``).

Published numbers, written from the sources: fever at 38.5 °C or more (NHLBI 2014); for a child of
4-12 years a heart rate above 150/min is PEWS's extreme band (Parshuram 2009, Table 1).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg.rows import dict_row

from ingestion.simulator.fleet import Fleet
from ingestion.simulator.payloads import write_landing
from transforms.pipeline import process_interval
from transforms.registry import import_registry

NHLBI_FEVER_C = 38.5
PEWS_4_12Y_HEART_RATE_EXTREME = 155.0  # above 150/min at 4-12 years


def test_readings_without_spo2_keep_their_temperature_and_heart_rate_and_raise_their_alerts(
        fresh_database_url, lake, tmp_path, log_settings):
    reference = date(2026, 11, 27)
    fleet = Fleet.generate(10, seed=23, reference_date=reference)
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), fresh_database_url, pseudonym_key="k")
    school_age = [p for p, days in zip(fleet.patient_ids, fleet.age_days) if 4.5 <= days / 365.25 < 11.5]
    febrile, racing = school_age[:2]
    arrival = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
    readings = fleet.readings(arrival - timedelta(minutes=1), arrival)
    no_spo2 = next(r for r in readings if r["patient_id"] == febrile)
    del no_spo2["vitals"]["spo2"]
    no_spo2["vitals"]["temperature"] = NHLBI_FEVER_C
    heart_only = next(r for r in readings if r["patient_id"] == racing)
    heart_only["vitals"] = {"heart_rate": PEWS_4_12Y_HEART_RATE_EXTREME}
    write_landing(lake, arrival, readings, name="minute")

    result = process_interval(arrival, arrival + timedelta(minutes=1), lake=lake, database_url=fresh_database_url,
                              run_id="partial", settings=log_settings)

    with psycopg.connect(fresh_database_url, row_factory=dict_row) as connection:
        quarantined = connection.execute("SELECT count(*) AS n FROM kidjamo.quarantine").fetchone()["n"]
        kept = {row["patient_id"]: row for row in connection.execute(
            "SELECT patient_id, spo2, heart_rate, temperature FROM kidjamo.measurements WHERE patient_id = ANY(%s)"
            " AND measured_at = ANY(%s)",
            ([febrile, racing], [datetime.fromisoformat(no_spo2["timestamp"]), datetime.fromisoformat(heart_only["timestamp"])]))}
        fired = {(row["patient_id"], row["rule_id"]): row["severity"] for row in connection.execute(
            "SELECT patient_id, rule_id, severity FROM kidjamo.alerts")}
    assert quarantined == 0, result
    assert kept[febrile]["spo2"] is None and kept[febrile]["temperature"] == NHLBI_FEVER_C
    assert kept[racing]["spo2"] is None and kept[racing]["temperature"] is None
    assert kept[racing]["heart_rate"] == PEWS_4_12Y_HEART_RATE_EXTREME
    assert fired[(febrile, "fever")] == "critical"
    assert fired[(racing, "heart_rate")] == "high"
