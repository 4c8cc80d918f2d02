"""Checks every exported resource: the R4B model of ``fhir.resources``, then the rules it does not enforce.

The models check structure and data types (required elements, cardinalities, id and dateTime
formats) but not terminology bindings. The rules a care system relies on are written out here:
for vital-sign Observations those of the R4 vital-signs profile (status, the vital-signs category,
a LOINC code, a Patient subject, an effective time with a time zone, and a UCUM quantity in the
profile's unit or a data-absent reason, never both); for Flags, Communications, Devices and
Patients the required codes and references.
"""

from __future__ import annotations

import re
from typing import Callable

from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from transforms.fhir.resources import (
    ALERT_RULE_SYSTEM,
    DATA_ABSENT_REASON,
    LOINC,
    OBSERVATION_CATEGORY,
    UCUM,
    VITAL_BY_CODE,
)

MODELS = {"Patient": Patient, "Device": Device, "Observation": Observation, "Flag": Flag, "Communication": Communication}

OBSERVATION_STATUSES = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
DATA_ABSENT_CODES = {"unknown", "asked-unknown", "temp-unknown", "not-asked", "asked-declined", "masked", "not-applicable",
                     "unsupported", "as-text", "error", "not-a-number", "negative-infinity", "positive-infinity",
                     "not-performed", "not-permitted"}
FLAG_STATUSES = {"active", "inactive", "entered-in-error"}
COMMUNICATION_STATUSES = {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
DEVICE_STATUSES = {"active", "inactive", "entered-in-error", "unknown"}
GENDERS = {"male", "female", "other", "unknown"}
#: A dateTime with a time must carry a zone (R4 dateTime regex); ours are always UTC instants.
_ZONED_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class InvalidResource(ValueError):
    """A resource failed validation; the message names the resource and every problem."""


def _codings(concept: dict | None) -> list[dict]:
    return (concept or {}).get("coding") or []


def _reference_to(reference: dict | None, resource_type: str) -> bool:
    return bool(reference) and str(reference.get("reference", "")).startswith(f"{resource_type}/")


def vital_sign_problems(observation: dict) -> list[str]:
    """Problems of an Observation against the R4 vital-signs profile constraints (empty = conforms)."""
    problems = []
    if observation.get("status") not in OBSERVATION_STATUSES:
        problems.append(f"status: {observation.get('status')!r} is not an observation status")
    if not any(c.get("system") == OBSERVATION_CATEGORY and c.get("code") == "vital-signs"
               for category in observation.get("category") or [] for c in _codings(category)):
        problems.append("category: the vital-signs category (observation-category#vital-signs) is missing")
    loinc = [c.get("code") for c in _codings(observation.get("code")) if c.get("system") == LOINC]
    vitals = [VITAL_BY_CODE[code] for code in loinc if code in VITAL_BY_CODE]
    if not vitals:
        problems.append(f"code: no LOINC coding of a vital sign (got {loinc or 'none'})")
    if not _reference_to(observation.get("subject"), "Patient"):
        problems.append("subject: must reference a Patient")
    period = observation.get("effectivePeriod")
    times = [observation["effectiveDateTime"]] if "effectiveDateTime" in observation else []
    if period is not None:
        times += [period.get("start")] + ([period["end"]] if "end" in period else [])
    if not times or not all(isinstance(t, str) and _ZONED_TIME.match(t) for t in times):
        problems.append(f"effective[x]: an effectiveDateTime or effectivePeriod.start with a time zone is required (got {times or 'none'})")
    elif period is not None and "end" in period and period["end"] < period["start"]:
        problems.append("effectivePeriod: end is before start")
    value, absent = observation.get("valueQuantity"), observation.get("dataAbsentReason")
    if value is not None and absent is not None:
        problems.append("value[x] and dataAbsentReason: only one may be present")
    elif value is None and absent is None:
        problems.append("value[x]: a valueQuantity or a dataAbsentReason is required")
    elif value is not None:
        if not isinstance(value.get("value"), (int, float)):
            problems.append("valueQuantity.value: a number is required")
        if value.get("system") != UCUM or not value.get("code") or not value.get("unit"):
            problems.append("valueQuantity: a UCUM system, code and unit are required")
        elif vitals and value["code"] != vitals[0].unit:
            problems.append(f"valueQuantity.code: {vitals[0].text} is in {vitals[0].unit!r}, got {value['code']!r}")
    elif not any(c.get("system") == DATA_ABSENT_REASON and c.get("code") in DATA_ABSENT_CODES for c in _codings(absent)):
        problems.append("dataAbsentReason: a data-absent-reason code is required")
    return problems


def _status_and_reference(resource: dict, statuses: set[str], kind: str, reference: str, meaning: str) -> list[str]:
    problems = []
    if resource.get("status") not in statuses:
        problems.append(f"status: {resource.get('status')!r} is not a {kind} status")
    if not _reference_to(resource.get(reference), "Patient"):
        problems.append(f"{reference}: must reference {meaning}")
    return problems


def _flag_problems(flag: dict) -> list[str]:
    problems = _status_and_reference(flag, FLAG_STATUSES, "flag", "subject", "a Patient")
    if not any(c.get("system") == ALERT_RULE_SYSTEM and c.get("code") and c.get("version") for c in _codings(flag.get("code"))):
        problems.append("code: the alert rule (id and version) is missing")
    if not (flag.get("period") or {}).get("start"):
        problems.append("period.start is required")
    return problems


def _communication_problems(communication: dict) -> list[str]:
    problems = _status_and_reference(communication, COMMUNICATION_STATUSES, "event", "subject", "a Patient")
    if not any(_reference_to(about, "Flag") for about in communication.get("about") or []):
        problems.append("about: must reference the alert's Flag")
    if not communication.get("sent"):
        problems.append("sent is required for a notification that was sent")
    return problems


def _device_problems(device: dict) -> list[str]:
    return _status_and_reference(device, DEVICE_STATUSES, "device", "patient", "the Patient wearing it")


def _patient_problems(patient: dict) -> list[str]:
    problems = []
    if patient.get("gender") not in GENDERS:
        problems.append(f"gender: {patient.get('gender')!r} is not an administrative gender")
    if not patient.get("identifier"):
        problems.append("identifier: the registry patient id is required")
    return problems


_RULES: dict[str, Callable[[dict], list[str]]] = {
    "Observation": vital_sign_problems, "Flag": _flag_problems, "Communication": _communication_problems,
    "Device": _device_problems, "Patient": _patient_problems,
}


def resource_problems(resource: dict) -> list[str]:
    """Every problem of one resource: the R4B model's, then our profile rules (empty = valid)."""
    resource_type = resource.get("resourceType")
    model = MODELS.get(resource_type)
    if model is None:
        return [f"resourceType: {resource_type!r} is not exported by Kidjamo"]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
    return _RULES[resource_type](resource)


def check_resource(resource: dict) -> None:
    """Raise :class:`InvalidResource` naming the resource and its problems, if it has any."""
    problems = resource_problems(resource)
    if problems:
        raise InvalidResource(f"{resource.get('resourceType')}/{resource.get('id')}: " + "; ".join(problems))
