"""FHIR for care systems: a Bulk Data export to the lake, and one patient's ``$everything`` bundle.

The export (``kidjamo fhir export``) reads the lake: gold patient-minutes by default (one
Observation per vital and minute, with an effective period), silver readings when asked (one per
vital and 30-second reading), quarantined readings as Observations with a data-absent reason, and
the registry, alerts and notifications from the warehouse. It writes the Bulk Data layout:
``exports/fhir/<export>/<ResourceType>.ndjson`` plus ``manifest.json`` (transactionTime, request,
output list). ``--since`` has Bulk Data's ``_since`` meaning: what *arrived* (lake) or changed
(alerts) at or after that instant.

``$everything`` (the HTTP endpoint) reads the warehouse's measurements, which hold the same silver
rows, for a measured-time window. Both paths build resources with the same functions and check
each one before it leaves (``transforms.fhir.profile``).
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

import orjson
import pandas as pd
import pyarrow as pa

from kidjamo.warehouse.database import connect
from kidjamo.lake.storage import Lake
from transforms.fhir import resources as fhir
from transforms.bronze import FIELD_QUARANTINE_FILE
from transforms.fhir.profile import check_resource
from transforms.gold import AGGREGATES, silver_to_gold
from kidjamo.lake.partitions import is_layer_file, layer_prefix
from kidjamo.lake.schema import GOLD, QUARANTINE, SILVER

EXPORT_PREFIX = "exports/fhir"
RESOURCE_ORDER = ("Patient", "Device", "Observation", "Flag", "Communication")
GRANULARITIES = ("minute", "reading")
QUARANTINE_FILES = ("bronze.parquet", "silver.parquet", "silver_gate.parquet")
#: A duplicate is a reading already in silver, not a missing one: it never becomes a data-absent Observation.
NOT_ABSENT_REASONS = {"duplicate"}


@dataclass
class ResourceSet:
    """Resources by type, checked as they are added."""

    by_type: dict[str, dict[str, dict]] = field(default_factory=lambda: {name: {} for name in RESOURCE_ORDER})

    def add(self, resources: Iterable[dict]) -> None:
        for resource in resources:
            check_resource(resource)
            # A later resource with the same id replaces the earlier one (a reading both quarantined
            # once and valid later is exported as its valid Observation).
            self.by_type[resource["resourceType"]][resource["id"]] = resource

    def counts(self) -> dict[str, int]:
        return {name: len(items) for name, items in self.by_type.items()}

    def all(self) -> list[dict]:
        return [resource for name in RESOURCE_ORDER for resource in self.by_type[name].values()]


# --- reading the lake ------------------------------------------------------------------------------
def _partition_minute(path: str) -> datetime:
    parts = dict(piece.split("=", 1) for piece in path.split("/") if "=" in piece)
    return pd.Timestamp(f"{parts['dt']}T{parts['hh']}:{parts['mm']}:00Z").to_pydatetime()


def read_layer(lake: Lake, layer: str, file_name: str, start: datetime, end: datetime, schema: pa.Schema) -> pa.Table:
    """``file_name`` of every arrival-minute partition of ``layer`` in [start, end), listed day by day."""
    paths = []
    day = pd.Timestamp(start).floor("D")
    while day < pd.Timestamp(end):
        for lake_file in lake.list_files(f"{layer_prefix(layer)}/dt={day:%Y-%m-%d}"):
            if is_layer_file(posixpath.basename(lake_file.path), file_name) and start <= _partition_minute(lake_file.path) < end:
                paths.append(lake_file.path)
        day += pd.Timedelta(days=1)
    return lake.read_parquet(paths, schema)


def _gold_minutes(lake: Lake, since: datetime, until: datetime, patients: set[str] | None) -> pd.DataFrame:
    """Gold rows that arrived in [since, until), completed by earlier arrivals of the same patient-minutes."""
    gold = read_layer(lake, "gold", "part-0.parquet", since, until, GOLD).to_pandas()
    if patients is not None:
        gold = gold[gold["patient_id"].isin(patients)]
    if not gold.empty and gold["minute"].min() < pd.Timestamp(since):
        # Late readings: their minute also has rows that arrived before `since`; aggregate them all.
        earlier = read_layer(lake, "gold", "part-0.parquet", gold["minute"].min().to_pydatetime(), since, GOLD).to_pandas()
        keys = gold[["patient_id", "minute"]].drop_duplicates()
        gold = pd.concat([earlier.merge(keys, on=["patient_id", "minute"]), gold], ignore_index=True)
    return fhir.merge_minutes(gold)


def _quarantined(lake: Lake, since: datetime, until: datetime, devices: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Quarantined readings of [since, until) that name a known device and a time, with their patient.

    Returns them and how many quarantined records could not be attributed (no parsable device or time).
    """
    table = pa.concat_tables([read_layer(lake, "quarantine", name, since, until, QUARANTINE) for name in QUARANTINE_FILES])
    frame = table.select(["device_id", "measured_at", "reason", "detail"]).to_pandas()
    frame = frame[~frame["reason"].isin(NOT_ABSENT_REASONS)]
    attributed = frame.dropna(subset=["device_id", "measured_at"]).merge(devices[["device_id", "patient_id"]], on="device_id")
    attributed = attributed.drop_duplicates(["device_id", "measured_at"], keep="last")
    return attributed, len(frame) - len(attributed)


# --- reading the warehouse -------------------------------------------------------------------------
def _frame(connection, query: str, parameters: dict) -> pd.DataFrame:
    cursor = connection.execute(query, parameters)
    return pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])


def _registry(connection, patient_ids: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    parameters = {"patients": patient_ids}
    only = "" if patient_ids is None else "WHERE patient_id = ANY(%(patients)s)"
    patients = _frame(connection, f"SELECT patient_id, birth_date, sex, care_team FROM kidjamo.patients {only}", parameters)
    devices = _frame(connection, f"SELECT device_id, patient_id, active FROM kidjamo.devices {only}", parameters)
    return patients, devices


def _alert_resources(connection, patient_ids: list[str] | None, since: datetime, until: datetime, *,
                     clinical_window: bool = False) -> tuple[list[dict], list[dict]]:
    """Flags of alerts and Communications of their sent notifications.

    By default (a Bulk Data export) what changed in [since, until): alerts updated, notifications
    sent. With ``clinical_window`` ($everything) the alerts whose readings overlap [since, until),
    with every notification sent about them.
    """
    parameters = {"patients": patient_ids, "since": since, "until": until}
    only = "" if patient_ids is None else "AND a.patient_id = ANY(%(patients)s)"
    if clinical_window:
        alert_filter = "a.first_reading_at < %(until)s AND a.last_reading_at >= %(since)s"
        sent_filter = "a.first_reading_at < %(until)s AND a.last_reading_at >= %(since)s"
    else:
        alert_filter = "(a.updated_at >= %(since)s AND a.opened_at < %(until)s) OR a.alert_id = ANY(%(notified)s)"
        sent_filter = "n.sent_at >= %(since)s AND n.sent_at < %(until)s"
    notifications = _frame(connection, f"""
        SELECT n.notification_id, n.channel, n.sent_at, e.event_type, e.severity, e.audience,
               a.alert_id, a.patient_id, a.rule_id
        FROM kidjamo.notifications AS n
        JOIN kidjamo.alert_events AS e ON e.event_id = n.event_id
        JOIN kidjamo.alerts AS a ON a.alert_id = e.alert_id
        WHERE n.status = 'sent' AND {sent_filter} {only}
        ORDER BY n.notification_id""", parameters)
    alerts = _frame(connection, f"""
        SELECT a.alert_id, a.patient_id, a.rule_id, a.rule_version, a.severity, a.status, a.first_reading_at,
               a.evidence, a.lineage, a.resolved_at
        FROM kidjamo.alerts AS a
        WHERE ({alert_filter}) {only}
        ORDER BY a.alert_id""", {**parameters, "notified": [int(i) for i in notifications["alert_id"].unique()]})
    flags = []
    for alert in alerts.to_dict("records"):
        readings = [{"device_id": entry["device_id"], "measured_at": pd.Timestamp(entry["measured_at"])}
                    for entry in alert["lineage"] or [] if entry.get("device_id") and entry.get("measured_at")]
        flags.append(fhir.alert_flag(alert, readings))
    communications = [fhir.notification_communication(row) for row in notifications.to_dict("records")]
    return flags, communications


def _registry_resources(patients: pd.DataFrame, devices: pd.DataFrame, firmware: dict[str, str]) -> list[dict]:
    resources = [fhir.patient_resource(row) for row in patients.to_dict("records")]
    resources += [fhir.device_resource({**row, "firmware_version": firmware.get(row["device_id"])})
                  for row in devices.to_dict("records")]
    return resources


def _firmware(frame: pd.DataFrame) -> dict[str, str]:
    """The latest firmware version reported by each device in ``frame``."""
    if frame.empty or "firmware_version" not in frame:
        return {}
    latest = frame.dropna(subset=["firmware_version"]).sort_values("measured_at").drop_duplicates("device_id", keep="last")
    return dict(zip(latest["device_id"], latest["firmware_version"]))


def _quarantined_minutes(quarantined: pd.DataFrame, minutes: pd.DataFrame) -> pd.DataFrame:
    """Patient-minutes whose every reading was quarantined: count and reasons."""
    if quarantined.empty:
        return pd.DataFrame(columns=["patient_id", "minute", "readings", "reasons"])
    frame = quarantined.assign(minute=quarantined["measured_at"].dt.floor("min"))
    grouped = frame.groupby(["patient_id", "minute"]).agg(
        readings=("reason", "size"), reasons=("reason", lambda r: ", ".join(sorted(set(r))))).reset_index()
    if minutes.empty:
        return grouped
    known = grouped.merge(minutes[["patient_id", "minute"]], on=["patient_id", "minute"], how="left", indicator=True)
    return grouped[(known["_merge"] == "left_only").to_numpy()]


def _emptied_fields(fields: pd.DataFrame, devices: pd.DataFrame) -> tuple[set, set]:
    """Vitals that bronze emptied from kept readings (field quarantine rows: device_id, measured_at, field).

    Returns the (device_id, instant, column) keys of readings and the (patient_id, minute, column) keys
    of patient-minutes, so that those vitals are exported as quarantined (error), not as not sent.
    """
    columns = {vital.column for vital in fhir.VITAL_SIGNS}
    by_reading, by_minute = set(), set()
    if fields.empty:
        return by_reading, by_minute
    fields = fields.dropna(subset=["device_id", "measured_at", "field"]).merge(devices[["device_id", "patient_id"]], on="device_id")
    for row in fields.itertuples(index=False):
        measured_at = pd.Timestamp(row.measured_at)
        for path in str(row.field).split(","):
            column = path.strip().rsplit(".", 1)[-1]
            if column in columns:
                by_reading.add((row.device_id, fhir.instant(measured_at), column))
                by_minute.add((row.patient_id, fhir.instant(measured_at.floor("min")), column))
    return by_reading, by_minute


def _observations(readings: pd.DataFrame | None, minutes: pd.DataFrame | None, quarantined: pd.DataFrame,
                  emptied: tuple[set, set] = (set(), set())) -> list[dict]:
    if readings is not None:
        # Quarantined first: a valid reading of the same device and instant wins.
        return fhir.quarantined_reading_observations(quarantined) + fhir.reading_observations(readings, emptied[0])
    return (fhir.minute_observations(minutes, emptied[1])
            + fhir.quarantined_minute_observations(_quarantined_minutes(quarantined, minutes)))


# --- the Bulk Data export -------------------------------------------------------------------------
def export_bulk(lake: Lake, database_url: str, *, since: datetime, until: datetime, patient_id: str | None = None,
                granularity: str = "minute", request: str | None = None) -> dict:
    """Write a Bulk Data export of [since, until) under ``exports/fhir/`` in the lake; return its manifest and counts.

    ``until`` is the export's transactionTime (the caller's clock: nothing here reads the time).
    ``granularity`` "minute" exports gold patient-minutes, "reading" every silver reading.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    since, until = fhir.utc(since), fhir.utc(until)
    if until <= since:
        raise ValueError(f"nothing to export: since {since.isoformat()} is not before {until.isoformat()}")
    patient_filter = [patient_id] if patient_id else None
    with connect(database_url, application_name="kidjamo-fhir-export") as connection:
        patients, devices = _registry(connection, patient_filter)
        if patient_id and patients.empty:
            raise LookupError(f"patient {patient_id!r} is not in kidjamo.patients")
        flags, communications = _alert_resources(connection, patient_filter, since, until)

    wanted = set(patient_filter) if patient_filter else None
    quarantined, unattributed = _quarantined(lake, since, until, devices)
    emptied = _emptied_fields(read_layer(lake, "quarantine", FIELD_QUARANTINE_FILE, since, until, QUARANTINE)
                              .select(["device_id", "measured_at", "field"]).to_pandas(), devices)
    readings = minutes = None
    if granularity == "reading":
        readings = read_layer(lake, "silver", "part-0.parquet", since, until, SILVER).to_pandas()
        if wanted is not None:
            readings = readings[readings["patient_id"].isin(wanted)]
        firmware = _firmware(readings)
        active = set(readings["patient_id"]) | set(quarantined["patient_id"])
    else:
        minutes = _gold_minutes(lake, since, until, wanted)
        firmware = _firmware(read_layer(lake, "silver", "part-0.parquet", since, until, SILVER)
                             .select(["device_id", "measured_at", "firmware_version"]).to_pandas())
        active = set(minutes["patient_id"]) | set(quarantined["patient_id"])
    active |= {flag["subject"]["identifier"]["value"] for flag in flags}
    patients = patients[patients["patient_id"].isin(active)]
    devices = devices[devices["patient_id"].isin(active)]

    exported = ResourceSet()
    exported.add(_registry_resources(patients, devices, firmware))
    exported.add(_observations(readings, minutes, quarantined, emptied))
    exported.add(flags)
    exported.add(communications)

    export_id = f"{until:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    folder = f"{EXPORT_PREFIX}/{export_id}"
    outputs = []
    for resource_type, items in exported.by_type.items():
        if not items:
            continue
        path = f"{folder}/{resource_type}.ndjson"
        lake.write_bytes(path, b"".join(orjson.dumps(resource) + b"\n" for resource in items.values()))
        outputs.append({"type": resource_type, "url": lake.uri(path), "count": len(items)})
    query = f"_since={fhir.instant(since)}" + (f"&patient={patient_id}" if patient_id else "")
    manifest = {
        "transactionTime": fhir.instant(until),
        "request": request or f"{fhir.BASE}/$export?{query}&_outputFormat=application/fhir+ndjson",
        "requiresAccessToken": False,
        "output": outputs,
        "error": [],
        "extension": {"kidjamo": {"since": fhir.instant(since), "until": fhir.instant(until), "granularity": granularity,
                                  "patient": patient_id, "quarantined_unattributed": unattributed,
                                  "fhirVersion": "4.0.1"}},
    }
    lake.write_bytes(f"{folder}/manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return {"export": folder, "manifest": manifest, "counts": exported.counts()}


def read_export(lake: Lake, folder: str) -> tuple[dict, dict[str, list[dict]]]:
    """The manifest of an export and its resources by type, read back from the lake."""
    manifest = orjson.loads(lake.read_bytes(f"{folder}/manifest.json"))
    resources = {}
    for output in manifest["output"]:
        data = lake.read_bytes(f"{folder}/{output['type']}.ndjson")
        resources[output["type"]] = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    return manifest, resources


# --- $everything ---------------------------------------------------------------------------------
_MEASUREMENT_COLUMNS = ["device_id", "patient_id", "measured_at", "arrival_minute", "firmware_version", "spo2_low_confidence",
                        *sorted({column for column, _ in AGGREGATES.values()} - {"measured_at"})]


def _visible(patients: pd.DataFrame, care_teams: list[str] | None) -> bool:
    return not patients.empty and (care_teams is None or patients.iloc[0]["care_team"] in care_teams)


def read_patient(database_url: str, patient_id: str, *, care_teams: list[str] | None = None) -> dict | None:
    """The Patient of ``patient_id``; None if unknown or (with ``care_teams``) of another team."""
    with connect(database_url, application_name="kidjamo-fhir-read") as connection:
        patients, _ = _registry(connection, [patient_id])
    if not _visible(patients, care_teams):
        return None
    resource = fhir.patient_resource(patients.iloc[0].to_dict())
    check_resource(resource)
    return resource


def patient_everything(database_url: str, patient_id: str, *, start: datetime, end: datetime, granularity: str = "minute",
                       care_teams: list[str] | None = None, base_url: str = "") -> dict | None:
    """A searchset Bundle of everything on one patient measured in [start, end); None if the patient is unknown.

    ``care_teams`` (when given) limits the read to patients of those teams: another team's patient
    is answered as unknown, like a patient that does not exist.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    start, end = fhir.utc(start), fhir.utc(end)
    with connect(database_url, application_name="kidjamo-fhir-read") as connection:
        patients, devices = _registry(connection, [patient_id])
        if not _visible(patients, care_teams):
            return None
        parameters = {"patient": patient_id, "start": start, "end": end, "devices": list(devices["device_id"])}
        measurements = _frame(connection, f"""
            SELECT {', '.join(_MEASUREMENT_COLUMNS)} FROM kidjamo.measurements
            WHERE patient_id = %(patient)s AND measured_at >= %(start)s AND measured_at < %(end)s
            ORDER BY measured_at, device_id""", parameters)
        quarantined = _frame(connection, """
            SELECT DISTINCT ON (device_id, measured_at) device_id, %(patient)s AS patient_id, measured_at, reason, detail
            FROM kidjamo.quarantine
            WHERE device_id = ANY(%(devices)s) AND measured_at >= %(start)s AND measured_at < %(end)s
              AND reason <> ALL(%(not_absent)s) AND layer <> 'bronze_field'  -- those readings are in measurements
            ORDER BY device_id, measured_at, quarantined_at DESC""", {**parameters, "not_absent": sorted(NOT_ABSENT_REASONS)})
        fields = _frame(connection, """
            SELECT device_id, measured_at, field FROM kidjamo.quarantine
            WHERE layer = 'bronze_field' AND device_id = ANY(%(devices)s) AND measured_at >= %(start)s AND measured_at < %(end)s""",
                        parameters)
        flags, communications = _alert_resources(connection, [patient_id], start, end, clinical_window=True)
    for frame in (measurements, quarantined, fields):
        frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
    readings = minutes = None
    if granularity == "reading":
        readings = measurements
    else:
        gold = silver_to_gold(pa.Table.from_pandas(measurements.assign(arrival_minute=pd.to_datetime(measurements["arrival_minute"], utc=True)),
                                                   preserve_index=False))
        minutes = fhir.merge_minutes(gold.to_pandas())
    bundle = ResourceSet()
    bundle.add(_registry_resources(patients, devices, _firmware(measurements)))
    bundle.add(_observations(readings, minutes, quarantined, _emptied_fields(fields, devices)))
    bundle.add(flags)
    bundle.add(communications)
    entries = [{"fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}", "resource": resource,
                "search": {"mode": "match" if resource["resourceType"] == "Patient" else "include"}}
               for resource in bundle.all()]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(entries), "entry": entries}


# --- erasure -------------------------------------------------------------------------------------
def _about_patient(resource: dict, patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return any(identifier.get("value") == patient_id for identifier in resource.get("identifier", []))
    reference = resource.get("subject") or resource.get("patient") or {}
    return (reference.get("identifier") or {}).get("value") == patient_id


def erase_patient_from_exports(lake: Lake, patient_id: str) -> dict:
    """Rewrite every FHIR export in the lake without the patient's resources; update the manifests' counts.

    Part of the right of erasure (``transforms.rights.erase_patient``): exports kept in the lake
    are copies of the patient's data like any layer. Returns how many files and resources changed.
    """
    result = {"fhir_export_files_rewritten": 0, "fhir_resources_erased": 0}
    changed: dict[str, dict[str, int]] = {}
    for lake_file in lake.list_files(EXPORT_PREFIX):
        if not lake_file.path.endswith(".ndjson"):
            continue
        lines = [line for line in lake.read_bytes(lake_file.path).splitlines() if line.strip()]
        kept = [line for line in lines if not _about_patient(orjson.loads(line), patient_id)]
        if len(kept) == len(lines):
            continue
        lake.write_bytes(lake_file.path, b"".join(line + b"\n" for line in kept))
        folder, name = posixpath.split(lake_file.path)
        changed.setdefault(folder, {})[name.removesuffix(".ndjson")] = len(kept)
        result["fhir_export_files_rewritten"] += 1
        result["fhir_resources_erased"] += len(lines) - len(kept)
    for folder, counts in changed.items():
        if not lake.exists(f"{folder}/manifest.json"):
            continue
        manifest = orjson.loads(lake.read_bytes(f"{folder}/manifest.json"))
        for output in manifest["output"]:
            output["count"] = counts.get(output["type"], output["count"])
        lake.write_bytes(f"{folder}/manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return result
