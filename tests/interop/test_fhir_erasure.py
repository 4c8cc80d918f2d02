"""The right of erasure reaches FHIR exports kept in the lake: the patient's resources go, the others and the manifest stay true."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pandas as pd

from transforms.fhir import resources as fhir
from transforms.fhir.export import erase_patient_from_exports, read_export

FOLDER = "exports/fhir/20261127T000000Z-test"


def _write_export(lake) -> None:
    readings = pd.DataFrame([{"device_id": f"device-{i}", "patient_id": f"patient-{i}", "measured_at": pd.Timestamp("2026-11-26T10:00:00Z"),
                              "spo2": 97.0, "heart_rate": 80.0, "temperature": 36.8, "respiratory_rate": 16.0, "pain_scale": 0}
                             for i in (1, 2)])
    by_type = {
        "Patient": [fhir.patient_resource({"patient_id": f"patient-{i}", "sex": "F", "birth_date": "2015-03-01"}) for i in (1, 2)],
        "Device": [fhir.device_resource({"device_id": f"device-{i}", "patient_id": f"patient-{i}"}) for i in (1, 2)],
        "Observation": fhir.reading_observations(readings),
        "Flag": [fhir.alert_flag({"alert_id": 1, "patient_id": "patient-1", "rule_id": "fever", "rule_version": "1", "severity": "critical",
                                  "status": "open", "first_reading_at": datetime(2026, 11, 26, 10, tzinfo=timezone.utc), "evidence": {}}, [])],
    }
    for resource_type, items in by_type.items():
        lake.write_bytes(f"{FOLDER}/{resource_type}.ndjson", b"".join(orjson.dumps(r) + b"\n" for r in items))
    manifest = {"transactionTime": "2026-11-27T00:00:00Z", "request": "test", "requiresAccessToken": False, "error": [],
                "output": [{"type": t, "url": lake.uri(f"{FOLDER}/{t}.ndjson"), "count": len(items)} for t, items in by_type.items()]}
    lake.write_bytes(f"{FOLDER}/manifest.json", orjson.dumps(manifest))


def test_erasure_removes_the_patients_resources_from_exports_and_fixes_the_manifest(lake):
    _write_export(lake)
    result = erase_patient_from_exports(lake, "patient-1")
    manifest, resources = read_export(lake, FOLDER)
    assert result == {"fhir_export_files_rewritten": 4, "fhir_resources_erased": 1 + 1 + 5 + 1}
    assert b"patient-1" not in b"".join(lake.read_bytes(f"{FOLDER}/{t}.ndjson") for t in resources)
    assert {t: len(items) for t, items in resources.items()} == {"Patient": 1, "Device": 1, "Observation": 5, "Flag": 0}
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 1, "Device": 1, "Observation": 5, "Flag": 0}
    assert erase_patient_from_exports(lake, "patient-1") == {"fhir_export_files_rewritten": 0, "fhir_resources_erased": 0}
