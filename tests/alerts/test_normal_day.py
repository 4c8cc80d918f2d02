"""A simulated normal day of 50 patients of mixed ages and genotypes raises no critical alert.

The day's readings (ingestion/simulator/: circadian rhythm, activity bouts, ambient cycles,
battery drain) are enriched as silver is (age at the reading, PEWS band, baselines with their
fallbacks, partial NEWS2, heat index) and go through the alert step in one wide batch, so the
rules that span minutes (flatline, consecutive pain) see the whole day.
"""

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from tests.alerts.conftest import alerts
from transforms.alerts.store import raise_alerts
from transforms.clinical import scores
from transforms.clinical.baselines import patient_baselines
from transforms.registry import import_registry, load_registry
from ingestion.simulator.fleet import Fleet
from transforms.clinical.rules import default_rules

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)

RULES = default_rules()


def silver_day(fleet: Fleet, database_url: str) -> pd.DataFrame:
    table = fleet.readings_table(DAY, DAY + timedelta(days=1))
    frame = pd.DataFrame({
        "device_id": np.array(fleet.device_ids)[table["patient"]],
        "patient_id": np.array(fleet.patient_ids)[table["patient"]],
        "measured_at": pd.to_datetime(table["epoch"], unit="s", utc=True),
        **{name: table[name].astype("float64") for name in
           ("spo2", "heart_rate", "temperature", "ambient_temp", "respiratory_rate", "hydration_pct",
            "activity_level", "pain_scale", "battery_level")},
    })
    registry = load_registry(database_url)
    frame = frame.merge(registry[["device_id", "birth_date", "genotype"]], on="device_id")
    frame = frame.merge(patient_baselines(database_url, registry, at=DAY, rules=RULES), on="patient_id")
    frame["age_years"] = scores.age_years(frame["birth_date"], frame["measured_at"])
    frame["age_band"] = scores.age_band(frame["age_years"], RULES)
    frame = frame.join(scores.news2_partial(frame["respiratory_rate"], frame["spo2"], frame["heart_rate"],
                                            frame["temperature"], frame["age_years"]))
    frame = frame.join(scores.heat_index_c(frame["ambient_temp"], pd.Series(np.nan, index=frame.index)))
    frame["raw_file"] = "raw/vitals/normal-day.ndjson"
    frame["record_index"] = np.arange(len(frame))
    frame["is_late"] = False
    frame["delay_seconds"] = 30.0
    return frame


def test_a_normal_day_of_50_patients_raises_no_critical_alert(alerts_db, log_settings, tmp_path):
    fleet = Fleet.generate(50, seed=5, reference_date=date(2026, 11, 27))
    import_registry(fleet.write_registry_csv(tmp_path / "registry.csv"), alerts_db, pseudonym_key="test-key")
    ages = fleet.age_days / 365.25
    assert ages.min() < 1 and ages.max() >= 18 and len(set(fleet.genotypes)) >= 3
    silver = silver_day(fleet, alerts_db)
    assert len(silver) == 50 * 2 * 60 * 24
    result = raise_alerts(alerts_db, silver, interval_start=DAY, interval_end=DAY + timedelta(days=1),
                          run_id="normal-day", settings=log_settings, rules=RULES)
    critical = [(a["patient_id"], a["rule_id"], a["evidence"]["values"]) for a in alerts(alerts_db)
                if a["severity"] == "critical"]
    assert critical == []
    assert not (result["candidates"]["severity"] == "critical").any()
    raised = result["candidates"].groupby(["rule_id", "severity"]).size().to_dict()
    print(f"normal day, 50 patients, non-critical candidates by rule: {raised}")
