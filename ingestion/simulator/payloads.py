"""What the fleet's devices send: payload dicts (with the ``duplicates``/``malformed`` scenarios
applied) and the NDJSON landing files made of them."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

import numpy as np

from kidjamo.lake.partitions import partition_path
from kidjamo.lake.storage import Lake

if TYPE_CHECKING:
    from ingestion.simulator.fleet import Fleet


def utc_instant(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive moment is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _malformed_string_spo2(payload: dict) -> None:
    payload["vitals"]["spo2"] = "ninety-four"


def _malformed_missing_timestamp(payload: dict) -> None:
    del payload["timestamp"]


def _malformed_out_of_range_heart_rate(payload: dict) -> None:
    payload["vitals"]["heart_rate"] = -5


def _malformed_bad_timestamp(payload: dict) -> None:
    payload["timestamp"] = "yesterday at noon"


def _malformed_vitals_not_object(payload: dict) -> None:
    payload["vitals"] = [payload["vitals"]["spo2"], payload["vitals"]["heart_rate"]]


#: Sensor faults of the ``malformed`` scenario, cycled reading by reading.
MALFORMATIONS = (
    _malformed_string_spo2,
    _malformed_missing_timestamp,
    _malformed_out_of_range_heart_rate,
    _malformed_bad_timestamp,
    _malformed_vitals_not_object,
)


def _payload_columns(table: dict[str, np.ndarray]) -> list[list]:
    """The payload fields after the patient, in payload order, as Python lists (integers where sent as such)."""
    return [
        table["timestamp"].tolist(),
        table["message_id"].tolist(),
        table["spo2"].tolist(),
        table["heart_rate"].astype(np.int64).tolist(),
        table["temperature"].tolist(),
        table["ambient_temp"].tolist(),
        table["respiratory_rate"].astype(np.int64).tolist(),
        table["hydration_pct"].tolist(),
        table["activity_level"].tolist(),
        table["pain_scale"].tolist(),
        table["battery_level"].astype(np.int64).tolist(),
        table["signal_quality"].astype(np.int64).tolist(),
        table["firmware_version"].tolist(),
    ]


def payloads_from_table(fleet: Fleet, table: dict[str, np.ndarray]) -> list[dict]:
    """Turn :meth:`Fleet.readings_table` columns into payload dicts (retries repeated, faults applied)."""
    patient = table["patient"].tolist()
    device_ids, patient_ids = fleet.device_ids, fleet.patient_ids
    payloads = [
        {
            "device_id": device_ids[p],
            "patient_id": patient_ids[p],
            "timestamp": ts,
            "message_id": mid,
            "vitals": {
                "spo2": spo2,
                "heart_rate": hr,
                "temperature": temp,
                "ambient_temp": ambient,
                "respiratory_rate": rr,
                "hydration_pct": hydration,
                "activity_level": activity,
                "pain_scale": pain,
            },
            "metadata": {"battery_level": battery, "signal_quality": signal, "firmware_version": firmware},
        }
        for p, ts, mid, spo2, hr, temp, ambient, rr, hydration, activity, pain, battery, signal, firmware in zip(
            patient, *_payload_columns(table)
        )
    ]
    special = np.flatnonzero((table["copies"] > 1) | (table["malformed"] >= 0))
    if len(special) == 0:
        return payloads
    result: list[dict] = []
    copies, malformed = table["copies"], table["malformed"]
    special_set = set(special.tolist())
    for row, payload in enumerate(payloads):
        if row not in special_set:
            result.append(payload)
            continue
        if malformed[row] >= 0:
            MALFORMATIONS[int(malformed[row])](payload)
        result.append(payload)
        if copies[row] > 1:
            result.append(json.loads(json.dumps(payload)))
    return result


# --- landing files --------------------------------------------------------------------------------
def landing_ndjson(readings: Iterable[dict], *, compress: bool = False) -> bytes:
    """NDJSON bytes of ``readings`` (one compact JSON object per line), gzipped when asked."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    body = ("\n".join(encoder.encode(reading) for reading in readings) + "\n").encode()
    return gzip.compress(body, compresslevel=5, mtime=0) if compress else body


def table_ndjson(fleet: Fleet, table: dict[str, np.ndarray], *, compress: bool = False) -> bytes:
    """NDJSON bytes of :meth:`Fleet.readings_table` columns, without building dicts (the benchmark path)."""
    if bool(((table["copies"] > 1) | (table["malformed"] >= 0)).any()):
        return landing_ndjson(payloads_from_table(fleet, table), compress=compress)
    device_ids, patient_ids = fleet.device_ids, fleet.patient_ids
    template = (
        '{{"device_id":"{}","patient_id":"{}","timestamp":"{}","message_id":"{}","vitals":{{"spo2":{},'
        '"heart_rate":{},"temperature":{},"ambient_temp":{},"respiratory_rate":{},"hydration_pct":{},'
        '"activity_level":{},"pain_scale":{}}},"metadata":{{"battery_level":{},"signal_quality":{},'
        '"firmware_version":"{}"}}}}\n'
    ).format
    lines = [
        template(device_ids[p], patient_ids[p], *values)
        for p, *values in zip(table["patient"].tolist(), *_payload_columns(table))
    ]
    body = "".join(lines).encode()
    return gzip.compress(body, compresslevel=5, mtime=0) if compress else body


def landing_path(arrival_minute: datetime, name: str, *, compress: bool = False) -> str:
    """Lake path of a landing file arriving in ``arrival_minute`` (UTC)."""
    minute = utc_instant(arrival_minute).replace(second=0, microsecond=0)
    return partition_path("landing", minute, f"{name}.ndjson{'.gz' if compress else ''}")


def write_landing(
    lake: Lake,
    arrival_minute: datetime,
    readings: list[dict],
    *,
    name: str | None = None,
    compress: bool = False,
) -> str:
    """Write ``readings`` as one NDJSON landing file in ``arrival_minute``'s partition; return its lake path.

    The file appears atomically (``Lake.write_bytes``: temporary name, fsync, rename; or one S3 PUT).
    """
    name = name or f"simulator-{uuid.uuid4().hex}"
    if name.startswith(("_", ".")):
        raise ValueError(f"landing file names starting with _ or . are ignored by the pipeline: {name!r}")
    path = landing_path(arrival_minute, name, compress=compress)
    lake.write_bytes(path, landing_ndjson(readings, compress=compress))
    return path
