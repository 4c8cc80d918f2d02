"""Small builders shared by the layer tests: payloads, landing files, a registry frame and a registered fleet."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from ingestion.simulator.fleet import Fleet
from kidjamo.lake.partitions import minute_partition
from kidjamo.lake.storage import Lake
from transforms.registry import import_registry

ARRIVAL = datetime(2026, 11, 27, 15, 31, tzinfo=timezone.utc)
NEXT = ARRIVAL + timedelta(minutes=1)


def payload(index: int = 1, **overrides) -> dict:
    """A valid reading (docs/ingestion.md payload) of device-{index} / patient-{index}, measured 30 s before ARRIVAL."""
    reading = {
        "device_id": f"device-{index}",
        "patient_id": f"patient-{index}",
        "timestamp": "2026-11-27T15:30:30Z",
        "message_id": f"m-{index}",
        "vitals": {"spo2": 97.0, "heart_rate": 80, "temperature": 36.8, "ambient_temp": 23.5,
                   "respiratory_rate": 16, "hydration_pct": 80.0, "activity_level": 3, "pain_scale": 1},
        "metadata": {"battery_level": 78, "signal_quality": 95, "firmware_version": "v2.1.3"},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            reading[section][name] = value
        else:
            reading[key] = value
    return reading


def land(lake: Lake, name: str, lines: list, minute: datetime = ARRIVAL) -> str:
    """Write an NDJSON landing file of ``lines`` (dicts are dumped, strings written as they are)."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path = f"landing/vitals/{minute_partition(minute)}/{name}"
    lake.write_bytes(path, text.encode())
    return path


def registry(count: int = 5) -> pd.DataFrame:
    """Registry frame as transforms.registry.load_registry returns it, for device-1..count."""
    return pd.DataFrame(
        {
            "device_id": [f"device-{i}" for i in range(1, count + 1)],
            "patient_id": [f"patient-{i}" for i in range(1, count + 1)],
            "birth_date": pd.to_datetime(["2015-03-01"] * count),
            "sex": ["F"] * count,
            "genotype": ["HbSS"] * count,
            "care_team": ["team-a"] * count,
            "baseline_spo2": [float("nan")] * count,
            "device_active": [True] * count,
        }
    )


def registered_fleet(database_url: str, folder: Path, patients: int, *, seed: int) -> Fleet:
    """A simulated fleet of ``patients`` whose registry (written under ``folder``) is imported into ``database_url``."""
    fleet = Fleet.generate(patients, seed=seed)
    import_registry(fleet.write_registry_csv(folder / "registry.csv"), database_url, pseudonym_key="test-key")
    return fleet


def register_devices(database_url: str, csv_path: Path | str, count: int = 5) -> None:
    """Import into ``database_url`` the registry :func:`registry` describes (device-1..count of patient-1..count)."""
    lines = [f"patient-{i},2015-03-01,F,HbSS,device-{i},team-a," for i in range(1, count + 1)]
    Path(csv_path).write_text("patient_id,birth_date,sex,genotype,device_id,care_team,baseline_spo2\n" + "\n".join(lines) + "\n")
    import_registry(csv_path, database_url, pseudonym_key="test-key")
