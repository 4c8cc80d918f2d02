"""Which normal readings the alert step keeps (the readings that let an alert resolve itself).

A normal reading of a rule's parameters matters only to a patient with an unresolved alert, or to
one the same batch opens an alert for: the others are left out (at 100,000 patients they were
~2 million rows per minute). The latest normal reading per patient and rule is kept.
"""

from __future__ import annotations

from datetime import timedelta

from tests.clinical.readings import T0, frame, reading
from transforms.alerts.evaluate import match_and_clear
from transforms.clinical.rules import default_rules

BCSH_HYPOXIA_SPO2 = 94.0  # BCSH 2015: SpO2 <= 94 % on air


def _batch():
    return frame([
        # p-open: an unresolved alert from an earlier minute; two normal readings, the later counts.
        reading(patient_id="p-open", device_id="d-open", at=T0, index=0),
        reading(patient_id="p-open", device_id="d-open", at=T0 + timedelta(seconds=30), index=1),
        # p-new: hypoxic, then normal, in the same batch: the alert it opens must see that reading.
        reading(patient_id="p-new", device_id="d-new", at=T0, index=2, spo2=BCSH_HYPOXIA_SPO2 - 4),
        reading(patient_id="p-new", device_id="d-new", at=T0 + timedelta(seconds=30), index=3),
        # p-well: well throughout, no alert: nothing of theirs is needed.
        reading(patient_id="p-well", device_id="d-well", at=T0, index=4),
    ])


def test_normals_are_kept_for_patients_with_an_unresolved_or_a_new_alert_only():
    rules = default_rules()
    matches, normals = match_and_clear(_batch(), None, rules=rules, normals_for=["p-open", "p-unknown"])
    assert set(matches["patient_id"]) == {"p-new"}
    assert set(normals["patient_id"]) == {"p-open", "p-new"}
    hypoxia = normals[(normals["patient_id"] == "p-new") & (normals["rule_id"] == "hypoxia")]
    assert list(hypoxia["normal_at"]) == [T0 + timedelta(seconds=30)]
    earlier = normals[(normals["patient_id"] == "p-open") & (normals["rule_id"] == "hypoxia")]
    assert list(earlier["normal_at"]) == [T0 + timedelta(seconds=30)]  # the latest of the two


def test_without_a_restriction_every_patient_has_its_normal_readings():
    _, normals = match_and_clear(_batch(), None, rules=default_rules())
    assert set(normals["patient_id"]) == {"p-open", "p-new", "p-well"}
    per_patient_rule = normals.groupby(["patient_id", "rule_id"]).size()
    assert (per_patient_rule == 1).all()
