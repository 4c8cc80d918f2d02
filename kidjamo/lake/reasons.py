"""Why a record did not reach silver. Every quarantine row carries one of these codes."""

from __future__ import annotations

# Bronze: the record could not be parsed, typed or attributed.
INVALID_JSON = "invalid_json"  # the text is not JSON (or the file could not be decoded)
TOO_DEEP = "too_deeply_nested"  # objects/arrays nested deeper than kidjamo.lake.json_safety.MAX_NESTING_DEPTH (not parsed)
NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object (a number, a string, a nested list)
INVALID_TEXT = "invalid_text"  # a control character (U+0000-U+001F, U+007F-U+009F) in a string field
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
DEVICE_FLOODING = "device_flooding"  # the device sent mostly bad readings in this batch: all its readings set aside

BRONZE_REASONS = (
    INVALID_JSON,
    TOO_DEEP,
    NOT_AN_OBJECT,
    INVALID_TEXT,
    MISSING_FIELD,
    WRONG_TYPE,
    BAD_TIMESTAMP,
    OUT_OF_RANGE,
    FUTURE_TIMESTAMP,
    TOO_LATE,
    UNKNOWN_DEVICE,
    DEVICE_PATIENT_MISMATCH,
)
