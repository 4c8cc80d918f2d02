"""Why a record did not reach silver. Every quarantine row carries one of these codes."""

from __future__ import annotations

# Bronze: the record could not be parsed, typed or attributed.
INVALID_JSON = "invalid_json"  # the text is not JSON (or the file could not be decoded)
NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object (a number, a string, a nested list)
MISSING_FIELD = "missing_field"  # a required field is absent or null
WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type (a string where a number is expected)
OUT_OF_RANGE = "out_of_range"  # a value outside its plausibility range (kidjamo/lake/schema.py)
BAD_TIMESTAMP = "bad_timestamp"  # the timestamp is not an ISO-8601 instant with a time zone
FUTURE_TIMESTAMP = "future_timestamp"  # measured more than 5 minutes after it arrived
TOO_LATE = "too_late"  # measured longer ago than the configured lateness (default 7 days)
UNKNOWN_DEVICE = "unknown_device"  # the device is not in the registry (or is inactive)
DEVICE_PATIENT_MISMATCH = "device_patient_mismatch"  # the registry assigns the device to another patient

# Silver: the record was valid but is not kept.
DUPLICATE = "duplicate"  # same (device_id, measured_at) as a reading already kept
GATE_REJECTED = "gate_rejected"  # a row-level Great Expectations check failed

BRONZE_REASONS = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    BAD_TIMESTAMP,
    OUT_OF_RANGE,
    FUTURE_TIMESTAMP,
    TOO_LATE,
    UNKNOWN_DEVICE,
    DEVICE_PATIENT_MISMATCH,
)
