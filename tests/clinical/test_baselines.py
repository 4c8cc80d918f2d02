"""Personal baselines: genotype defaults, fallbacks, and the stored median of recent non-alert readings."""

import json
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import psycopg
import pytest

from transforms.clinical import baselines
from transforms.clinical.rules import default_rules

AS_OF = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
RULES = default_rules()


@pytest.mark.parametrize(
    ("genotype", "spo2"),
    [("HbSS", 96.0), ("HbSB0", 96.0), ("HbSC", 98.0), ("HbSB+", 98.0), ("other", 98.0), ("unheard-of", 98.0)],
)
def test_genotype_default_spo2(genotype, spo2):
    assert baselines.genotype_default_spo2(pd.Series([genotype]), RULES).iloc[0] == spo2


def _registry(rows):
    return pd.DataFrame(rows, columns=["device_id", "patient_id", "birth_date", "sex", "genotype", "care_team",
                                       "baseline_spo2", "device_active"])


def _insert_patient(connection, patient_id, birth=date(2016, 1, 1), genotype="HbSS", baseline=None):
    connection.execute(
        "INSERT INTO kidjamo.patients (patient_id, birth_date, sex, genotype, baseline_spo2) VALUES (%s, %s, 'F', %s, %s)",
        (patient_id, birth, genotype, baseline))
    connection.execute("INSERT INTO kidjamo.devices (device_id, patient_id) VALUES (%s, %s)", (f"dev-{patient_id}", patient_id))


def _insert_readings(connection, patient_id, start, count, spo2, heart_rate=90.0, step=timedelta(seconds=30)):
    connection.execute("SELECT kidjamo.ensure_measurement_partitions(%s, %s)",
                       ((start - timedelta(days=1)).date(), (start + step * count + timedelta(days=1)).date()))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO kidjamo.measurements (device_id, patient_id, measured_at, arrival_minute, spo2, heart_rate,"
            " temperature, hydration_pct, raw_file, record_index, record_hash, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, 36.9, 80, 'raw/x.json', %s, 'h', 'test')",
            [(f"dev-{patient_id}", patient_id, start + step * i, start + step * i, spo2, heart_rate, i) for i in range(count)])


def test_registry_then_genotype_fallbacks_when_nothing_is_stored(fresh_database_url):
    registry = _registry([
        ("d1", "p-registry", date(2016, 1, 1), "F", "HbSS", "t", 93.0, True),
        ("d2", "p-genotype", date(2016, 1, 1), "F", "HbSC", "t", None, True),
        ("d3", "p-infant", date(2026, 10, 1), "M", "HbSS", "t", None, True),
    ])
    result = baselines.patient_baselines(fresh_database_url, registry, at=AS_OF, rules=RULES).set_index("patient_id")
    assert result.loc["p-registry", "spo2_baseline"] == 93.0
    assert result.loc["p-genotype", "spo2_baseline"] == 98.0
    assert result.loc["p-registry", "heart_rate_baseline"] == 90.0  # 4-12 y mid-normal
    assert result.loc["p-infant", "heart_rate_baseline"] == 130.0  # 0-3 months mid-normal
    assert result.loc["p-infant", "temperature_baseline"] == pytest.approx(36.8)
    assert result.loc["p-infant", "hydration_baseline"] == 80.0


def test_recompute_stores_the_median_of_six_hours_and_more_outside_alert_episodes(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        _insert_patient(connection, "p1", baseline=99.0)
        _insert_patient(connection, "p-short")
        start = AS_OF - timedelta(hours=7)
        _insert_readings(connection, "p1", start, 7 * 120, spo2=95.0)
        # An hour of low readings inside an alert episode must not pull the baseline down.
        episode_start = AS_OF - timedelta(days=2)
        _insert_readings(connection, "p1", episode_start, 120, spo2=80.0, heart_rate=150.0)
        connection.execute(
            "INSERT INTO kidjamo.alerts (patient_id, rule_id, rule_version, severity, first_reading_at, last_reading_at,"
            " evidence, status) VALUES ('p1', 'hypoxia', '1', 'high', %s, %s, %s, 'resolved')",
            (episode_start, episode_start + timedelta(hours=1), json.dumps({})))
        _insert_readings(connection, "p-short", start, 60, spo2=90.0)
    counts = baselines.recompute_baselines(fresh_database_url, AS_OF, rules=RULES)
    assert counts["stored"] == 1
    registry = _registry([("d1", "p1", date(2016, 1, 1), "F", "HbSS", "t", 99.0, True),
                          ("d2", "p-short", date(2016, 1, 1), "F", "HbSS", "t", None, True)])
    result = baselines.patient_baselines(fresh_database_url, registry, at=AS_OF, rules=RULES).set_index("patient_id")
    assert result.loc["p1", "spo2_baseline"] == 95.0  # personal baseline wins over the registry's 99
    assert result.loc["p1", "heart_rate_baseline"] == 90.0
    assert result.loc["p1", "hydration_baseline"] == 80.0
    assert result.loc["p-short", "spo2_baseline"] == 96.0  # half an hour of data: genotype default


def test_recompute_drops_a_baseline_that_no_longer_has_enough_data(fresh_database_url):
    with psycopg.connect(fresh_database_url) as connection:
        _insert_patient(connection, "p1")
        _insert_readings(connection, "p1", AS_OF - timedelta(hours=7), 7 * 120, spo2=95.0)
    assert baselines.recompute_baselines(fresh_database_url, AS_OF, rules=RULES)["stored"] == 1
    assert baselines.recompute_baselines(fresh_database_url, AS_OF + timedelta(days=8), rules=RULES)["removed"] == 1
