"""Lake and warehouse rows -> FHIR R4 resources, as JSON documents (see docs/fhir.md for the table).

Every resource id is derived from what it describes (a device and instant, a patient and minute, an
alert, a notification), so exporting the same data twice gives the same ids and a receiving FHIR
server updates instead of duplicating. Identity: the resources carry the registry's ``patient_id``
and ``device_id`` (the identifiers the care team knows), never the analytics pseudonyms, and no
name or address (Kidjamo holds none): a FHIR export is identified data for clinicians.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

BASE = "https://kidjamo.org/fhir"  # our own naming systems, code systems and extensions
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY = "http://terminology.hl7.org/CodeSystem/flag-priority-code"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"

PATIENT_SYSTEM = f"{BASE}/sid/patient-id"
DEVICE_SYSTEM = f"{BASE}/sid/device-id"
ALERT_SYSTEM = f"{BASE}/sid/alert-id"
NOTIFICATION_SYSTEM = f"{BASE}/sid/notification-id"
ALERT_RULE_SYSTEM = f"{BASE}/CodeSystem/alert-rule"
ALERT_SEVERITY_SYSTEM = f"{BASE}/CodeSystem/alert-severity"
QUARANTINE_REASON_SYSTEM = f"{BASE}/CodeSystem/quarantine-reason"
NOTIFICATION_CHANNEL_SYSTEM = f"{BASE}/CodeSystem/notification-channel"
STATISTIC_EXTENSION = f"{BASE}/StructureDefinition/aggregate-statistic"
READINGS_EXTENSION = f"{BASE}/StructureDefinition/aggregate-readings"
SEVERITY_EXTENSION = f"{BASE}/StructureDefinition/alert-severity"
EVIDENCE_EXTENSION = f"{BASE}/StructureDefinition/alert-evidence"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"

_ID_NAMESPACE = uuid.UUID("6f1d2c8e-5b0a-4c61-9a57-4b8f1f0b6a10")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

VITAL_SIGNS_CATEGORY = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
                         "text": "Vital Signs"}]


@dataclass(frozen=True)
class VitalSign:
    """One vital of the payload as a FHIR vital-sign Observation: LOINC codes, UCUM unit, minute aggregate."""

    column: str  # silver column
    codings: tuple[tuple[str, str], ...]  # (LOINC code, display); the first is the most specific
    text: str
    unit: str  # UCUM code (also the human unit)
    minute_column: str  # gold column used for the patient-minute Observation
    statistic: str  # observation-statistics code of that column

    @property
    def code(self) -> str:
        return self.codings[0][0]

    def codeable_concept(self) -> dict:
        return {"coding": [{"system": LOINC, "code": code, "display": display} for code, display in self.codings],
                "text": self.text}


#: The vitals exported. SpO2 by pulse oximetry carries 59408-5 and the base SpO2 code 2708-6, as
#: the R4 vital-signs profile asks. The minute aggregate is the clinically cautious one where the
#: alert rules look at extremes (lowest SpO2, highest temperature, respiratory rate and pain).
VITAL_SIGNS: tuple[VitalSign, ...] = (
    VitalSign("spo2", (("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
                       ("2708-6", "Oxygen saturation in Arterial blood")), "SpO2", "%", "spo2_min", "minimum"),
    VitalSign("heart_rate", (("8867-4", "Heart rate"),), "Heart rate", "/min", "heart_rate_mean", "average"),
    VitalSign("temperature", (("8310-5", "Body temperature"),), "Body temperature", "Cel", "temperature_max", "maximum"),
    VitalSign("respiratory_rate", (("9279-1", "Respiratory rate"),), "Respiratory rate", "/min", "respiratory_rate_max", "maximum"),
    VitalSign("pain_scale", (("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported"),),
              "Pain (0-10)", "{score}", "pain_max", "maximum"),
)
VITAL_BY_CODE = {vital.code: vital for vital in VITAL_SIGNS}

#: data-absent-reason codes: a vital the device did not send, and one whose reading was quarantined.
ABSENT_NOT_SENT = "not-performed"
ABSENT_QUARANTINED = "error"
_ABSENT_DISPLAY = {ABSENT_NOT_SENT: "Not Performed", ABSENT_QUARANTINED: "Error"}

#: Alert severity -> flag-priority (no-, low, medium, high priority).
_FLAG_PRIORITY = {"info": ("PN", "No alarm"), "warning": ("PL", "Low priority"), "high": ("PM", "Medium priority"),
                  "critical": ("PH", "High priority")}
_COMMUNICATION_PRIORITY = {"info": "routine", "warning": "routine", "high": "urgent", "critical": "stat"}


# --- identifiers and times ----------------------------------------------------------------------
def fhir_id(identifier: str) -> str:
    """The FHIR resource id of a Kidjamo identifier: itself when it is a valid FHIR id, else a stable hash."""
    if _FHIR_ID.match(identifier):
        return identifier
    return "h-" + hashlib.sha256(identifier.encode()).hexdigest()[:40]


def derived_id(*parts: object) -> str:
    """A stable resource id (UUID v5) of what a resource describes."""
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(str(part) for part in parts)))


def instant(moment) -> str:
    """An R4 instant/dateTime in UTC with seconds (``2026-11-27T15:30:30Z``; microseconds kept when present)."""
    moment = pd.Timestamp(moment)
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: FHIR times are exported in UTC")
    moment = moment.tz_convert("UTC")
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def patient_reference(patient_id: str) -> dict:
    return {"reference": f"Patient/{fhir_id(patient_id)}", "identifier": {"system": PATIENT_SYSTEM, "value": patient_id}}


def device_reference(device_id: str) -> dict:
    return {"reference": f"Device/{fhir_id(device_id)}", "identifier": {"system": DEVICE_SYSTEM, "value": device_id}}


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


def _number(value, unit: str):
    """Quantity values: integers stay integers (pain scores), floats keep one decimal place of precision."""
    if unit == "{score}":
        return int(value)
    return round(float(value), 2)


# --- Patient and Device -------------------------------------------------------------------------
def patient_resource(patient: dict) -> dict:
    """A registry row (patient_id, birth_date, sex) as a Patient."""
    gender = {"F": "female", "M": "male", "X": "other"}.get(patient.get("sex"), "unknown")
    resource = {
        "resourceType": "Patient",
        "id": fhir_id(patient["patient_id"]),
        "identifier": [{"use": "usual", "system": PATIENT_SYSTEM, "value": patient["patient_id"]}],
        "active": True,
        "gender": gender,
    }
    if patient.get("birth_date") is not None:
        resource["birthDate"] = pd.Timestamp(patient["birth_date"]).strftime("%Y-%m-%d")
    return resource


def device_resource(device: dict) -> dict:
    """A device row (device_id, patient_id, active, firmware_version) as a Device assigned to its patient."""
    resource = {
        "resourceType": "Device",
        "id": fhir_id(device["device_id"]),
        "identifier": [{"system": DEVICE_SYSTEM, "value": device["device_id"]}],
        "status": "active" if device.get("active", True) else "inactive",
        "deviceName": [{"name": "Kidjamo wearable vital-signs sensor", "type": "user-friendly-name"}],
        "patient": patient_reference(device["patient_id"]),
    }
    if device.get("firmware_version"):
        resource["version"] = [{"type": {"text": "firmware"}, "value": device["firmware_version"]}]
    return resource


# --- vital-sign Observations --------------------------------------------------------------------
def _observation(observation_id: str, vital: VitalSign, patient_id: str, effective: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": {"profile": [VITAL_SIGNS_PROFILE]},
        "status": "final",
        "category": VITAL_SIGNS_CATEGORY,
        "code": vital.codeable_concept(),
        "subject": patient_reference(patient_id),
        **effective,
    }


def _set_value(observation: dict, vital: VitalSign, value, absent_reason: str = ABSENT_NOT_SENT) -> None:
    if _present(value):
        observation["valueQuantity"] = {"value": _number(value, vital.unit), "unit": vital.unit, "system": UCUM, "code": vital.unit}
    else:
        observation["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_REASON, "code": absent_reason, "display": _ABSENT_DISPLAY[absent_reason]}]}


def reading_observation_id(device_id: str, measured_at, vital: VitalSign) -> str:
    return derived_id("reading", device_id, instant(measured_at), vital.code)


def _reading_observation(row, vital: VitalSign) -> dict:
    """The Observation of one vital of one reading (a row with device_id, patient_id, measured_at), without its value."""
    observation = _observation(reading_observation_id(row.device_id, row.measured_at, vital), vital, row.patient_id,
                               {"effectiveDateTime": instant(row.measured_at)})
    observation["device"] = device_reference(row.device_id)
    return observation


def _absent_reason(key: tuple, emptied: frozenset | set) -> str:
    return ABSENT_QUARANTINED if key in emptied else ABSENT_NOT_SENT


def _per_vital(rows: pd.DataFrame, observation_of, complete) -> list[dict]:
    """One Observation per vital sign of each row: ``observation_of(row, vital)``, then ``complete(observation, row, vital)``
    sets its value (or why it is absent) and what else it carries."""
    observations = []
    for row in rows.itertuples(index=False):
        for vital in VITAL_SIGNS:
            observation = observation_of(row, vital)
            complete(observation, row, vital)
            observations.append(observation)
    return observations


def reading_observations(silver: pd.DataFrame, emptied: frozenset | set = frozenset()) -> list[dict]:
    """One Observation per vital of each silver reading (effectiveDateTime = measured_at).

    A vital the device did not send gets ``dataAbsentReason`` not-performed; one that bronze emptied
    because its value was quarantined (``emptied``: (device_id, instant, column) keys) gets error.
    SpO2 below 70 % (outside the oximeter's specified accuracy) carries a note.
    """
    def complete(observation: dict, row, vital: VitalSign) -> None:
        _set_value(observation, vital, getattr(row, vital.column),
                   _absent_reason((row.device_id, instant(row.measured_at), vital.column), emptied))
        if vital.column == "spo2" and getattr(row, "spo2_low_confidence", False):
            observation["note"] = [{"text": "below 70 %: outside the oximeter's specified accuracy (ISO 80601-2-61)"}]

    return _per_vital(silver, _reading_observation, complete)


def quarantined_reading_observations(quarantine: pd.DataFrame) -> list[dict]:
    """Observations with ``dataAbsentReason`` error for quarantined readings (device_id, patient_id, measured_at, reason, detail)."""
    def complete(observation: dict, row, vital: VitalSign) -> None:
        _set_value(observation, vital, None, ABSENT_QUARANTINED)
        observation["note"] = [{"text": f"reading quarantined ({row.reason}): {row.detail}"}]

    return _per_vital(quarantine, _reading_observation, complete)


def merge_minutes(gold: pd.DataFrame) -> pd.DataFrame:
    """One row per (patient, measured minute) from gold rows of several arrival minutes (late readings).

    Means are weighted by the readings behind them; extremes combine; counts add up.
    """
    if gold.empty:
        return gold.assign(readings=pd.Series(dtype="int64"))
    frame = gold.copy()
    frame["heart_rate_weighted"] = frame["heart_rate_mean"] * frame["readings"]
    frame["heart_rate_count"] = frame["readings"].where(frame["heart_rate_mean"].notna(), 0)
    merged = frame.groupby(["patient_id", "minute"], sort=True).agg(
        readings=("readings", "sum"), spo2_min=("spo2_min", "min"), heart_rate_weighted=("heart_rate_weighted", "sum"),
        heart_rate_count=("heart_rate_count", "sum"), temperature_max=("temperature_max", "max"),
        respiratory_rate_max=("respiratory_rate_max", "max"), pain_max=("pain_max", "max"),
    ).reset_index()
    merged["heart_rate_mean"] = (merged["heart_rate_weighted"] / merged["heart_rate_count"]).where(merged["heart_rate_count"] > 0)
    return merged.drop(columns=["heart_rate_weighted", "heart_rate_count"])


def minute_observation_id(patient_id: str, minute, vital: VitalSign) -> str:
    return derived_id("minute", patient_id, instant(minute), vital.code)


def _minute_observation(row, vital: VitalSign) -> dict:
    """The Observation of one vital over one patient-minute (a row with patient_id, minute), without its value."""
    start = pd.Timestamp(row.minute)
    return _observation(minute_observation_id(row.patient_id, start, vital), vital, row.patient_id,
                        {"effectivePeriod": {"start": instant(start), "end": instant(start + timedelta(minutes=1))}})


def minute_observations(minutes: pd.DataFrame, emptied: frozenset | set = frozenset()) -> list[dict]:
    """One Observation per vital and patient-minute (effectivePeriod = the minute), from :func:`merge_minutes`.

    The value is the aggregate named by the ``aggregate-statistic`` extension (minimum SpO2, mean
    heart rate, maximum temperature, respiratory rate and pain) over ``aggregate-readings`` readings.
    A vital without value is error when a reading of that minute had it quarantined (``emptied``:
    (patient_id, minute instant, column) keys), else not-performed.
    """
    def complete(observation: dict, row, vital: VitalSign) -> None:
        observation["extension"] = [
            {"url": STATISTIC_EXTENSION, "valueCodeableConcept": {"coding": [{"system": OBSERVATION_STATISTICS, "code": vital.statistic}]}},
            {"url": READINGS_EXTENSION, "valueInteger": int(row.readings)},
        ]
        _set_value(observation, vital, getattr(row, vital.minute_column),
                   _absent_reason((row.patient_id, instant(row.minute), vital.column), emptied))

    return _per_vital(minutes, _minute_observation, complete)


def quarantined_minute_observations(minutes: pd.DataFrame) -> list[dict]:
    """Observations with ``dataAbsentReason`` error for patient-minutes whose every reading was quarantined.

    ``minutes`` has patient_id, minute, readings (how many were quarantined) and reasons (comma-separated codes).
    """
    def complete(observation: dict, row, vital: VitalSign) -> None:
        _set_value(observation, vital, None, ABSENT_QUARANTINED)
        observation["note"] = [{"text": f"{int(row.readings)} reading(s) of this minute quarantined ({row.reasons})"}]

    return _per_vital(minutes, _minute_observation, complete)


# --- alerts ---------------------------------------------------------------------------------------
def flag_id(alert_id: int) -> str:
    return derived_id("alert", alert_id)


def alert_flag(alert: dict, readings: list[dict]) -> dict:
    """An alert (kidjamo.alerts row) as a Flag; ``readings`` are readings behind it (device_id, measured_at).

    active while open or acknowledged, inactive once resolved; the rule (id, version) is the code,
    the severity both the standard flag-priority and our own code, the evidence (values, thresholds,
    baseline) a JSON extension, and each reading behind it a flag-detail reference to its reading
    Observations of the vitals the evidence names.
    """
    severity = alert["severity"]
    priority_code, priority_display = _FLAG_PRIORITY[severity]
    period = {"start": instant(alert["first_reading_at"])}
    if alert.get("resolved_at") is not None:
        period["end"] = instant(alert["resolved_at"])
    extensions = [
        {"url": FLAG_PRIORITY_EXTENSION, "valueCodeableConcept": {"coding": [
            {"system": FLAG_PRIORITY, "code": priority_code, "display": priority_display}]}},
        {"url": SEVERITY_EXTENSION, "valueCoding": {"system": ALERT_SEVERITY_SYSTEM, "code": severity}},
        {"url": EVIDENCE_EXTENSION, "valueString": json.dumps(alert.get("evidence") or {}, sort_keys=True, default=str)},
    ]
    evidence_values = (alert.get("evidence") or {}).get("values") or {}
    vitals = [vital for vital in VITAL_SIGNS if vital.column in evidence_values] or list(VITAL_SIGNS)
    for reading in readings:
        for vital in vitals:
            extensions.append({"url": FLAG_DETAIL_EXTENSION, "valueReference": {
                "reference": f"Observation/{reading_observation_id(reading['device_id'], reading['measured_at'], vital)}"}})
    return {
        "resourceType": "Flag",
        "id": flag_id(alert["alert_id"]),
        "extension": extensions,
        "identifier": [{"system": ALERT_SYSTEM, "value": str(alert["alert_id"])}],
        "status": "inactive" if alert["status"] == "resolved" else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [{"system": ALERT_RULE_SYSTEM, "version": alert["rule_version"], "code": alert["rule_id"]}],
                 "text": f"Kidjamo alert {alert['rule_id']} (rule version {alert['rule_version']}, {severity})"},
        "subject": patient_reference(alert["patient_id"]),
        "period": period,
        "author": {"display": "Kidjamo clinical alert rules (decision support)"},
    }


def notification_communication(notification: dict) -> dict:
    """A sent notification (kidjamo.notifications joined with its event and alert) as a Communication."""
    severity = notification["severity"]
    text = (f"{severity} alert {notification['rule_id']} {notification['event_type']} for patient "
            f"{notification['patient_id']} (alert {notification['alert_id']}, audience {notification['audience']})")
    return {
        "resourceType": "Communication",
        "id": derived_id("notification", notification["notification_id"]),
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": str(notification["notification_id"])}],
        "status": "completed",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}]}],
        "priority": _COMMUNICATION_PRIORITY[severity],
        "medium": [{"coding": [{"system": NOTIFICATION_CHANNEL_SYSTEM, "code": notification["channel"]}],
                    "text": notification["channel"]}],
        "subject": patient_reference(notification["patient_id"]),
        "about": [{"reference": f"Flag/{flag_id(notification['alert_id'])}"}],
        "sent": instant(notification["sent_at"]),
        "recipient": [{"display": f"{notification['audience'].replace('_', ' ')} ({notification['channel']})"}],
        "payload": [{"contentString": text}],
    }


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive input is refused)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.astimezone(timezone.utc)
