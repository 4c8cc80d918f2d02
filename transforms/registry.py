"""The patient registry: import from CSV into ``kidjamo.patients``/``kidjamo.devices``, read back for the pipeline.

CSV columns (README, "The data"): ``patient_id, birth_date, sex, genotype, device_id, care_team, baseline_spo2``;
one line per device, so a patient with two wearables has two lines that must agree on the patient
columns. Every line is validated before anything is written; an error names the file, line, column,
what was expected and what was found. The import is an idempotent upsert: importing the same file twice
changes nothing (and writes no audit rows the second time, since only real changes fire the audit
triggers).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pandas as pd
from kidjamo.warehouse.audit import record_audit_event
from kidjamo.warehouse.pseudonyms import ensure_pseudonyms
from kidjamo.warehouse.database import PIPELINE_ROLE, connect

COLUMNS = ["patient_id", "birth_date", "sex", "genotype", "device_id", "care_team", "baseline_spo2"]
OPTIONAL_COLUMNS = {"care_team", "baseline_spo2"}
SEXES = ("F", "M", "X")
GENOTYPES = ("HbSS", "HbSC", "HbSB0", "HbSB+", "HbSD", "HbSO", "HbSE", "other")
# Spellings clinicians use, reduced by _genotype_key (case, "Hb" prefix, spaces, dashes, "β"/"beta"
# and "°" folded away) to the stored genotype. "Sβ" without 0 or + is refused: the two differ clinically.
GENOTYPE_SPELLINGS = {
    "SS": "HbSS", "SC": "HbSC", "SB0": "HbSB0", "SBO": "HbSB0", "SB+": "HbSB+", "SBPLUS": "HbSB+",
    "SD": "HbSD", "SDPUNJAB": "HbSD", "SO": "HbSO", "SOARAB": "HbSO", "SE": "HbSE", "OTHER": "other",
}
GENOTYPE_EXAMPLES = "HbSS (SS, Hb SS), HbSC (SC), HbSB0 (Sβ0, SB0), HbSB+ (Sβ+, SB+), HbSD, HbSO, HbSE, other"


def _genotype_key(spelling: str) -> str:
    key = spelling.upper()
    for written, folded in (("Β", "B"), ("BETA", "B"), ("°", "0"), ("⁰", "0"), ("₀", "0"), ("⁺", "+")):
        key = key.replace(written.upper(), folded)
    key = "".join(character for character in key if character not in " -_/.()")
    return key[2:] if key.startswith("HB") else key


def normalise_genotype(spellings: pd.Series) -> pd.Series:
    """The stored genotype (one of ``GENOTYPES``) of each spelling, NA where the spelling is unknown."""
    return pd.Series(spellings, dtype="object").map(lambda spelling: GENOTYPE_SPELLINGS.get(_genotype_key(spelling))
                                                    if isinstance(spelling, str) else None)
MAX_REPORTED_ERRORS = 50


class RegistryError(ValueError):
    """The registry file is invalid; ``errors`` lists one message per offending line and column."""

    def __init__(self, path: str, errors: list[str]):
        self.path = path
        self.errors = errors
        shown = errors[:MAX_REPORTED_ERRORS]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(f"{path}: {len(errors)} error(s)\n" + "\n".join(shown) + more)


def read_registry_csv(csv_path: str | Path, *, today: date | None = None) -> pd.DataFrame:
    """Parse and validate a registry CSV; return one typed row per line or raise :class:`RegistryError`."""
    path = str(csv_path)
    today = today or date.today()
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise RegistryError(path, [f"line 1: expected a header with columns {', '.join(COLUMNS)}, got an empty file"])
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RegistryError(path, [f"line 1 (header): expected columns {', '.join(COLUMNS)}; missing {', '.join(missing)}"])
    frame = frame[COLUMNS].apply(lambda column: column.str.strip())
    line = pd.Series(range(2, len(frame) + 2), index=frame.index)  # line 1 is the header
    errors: list[tuple[int, str]] = []

    def reject(bad: pd.Series, column: str, expected: str) -> None:
        for number, got in zip(line[bad], frame.loc[bad, column]):
            errors.append((int(number), f"line {number}, column {column}: expected {expected}, got {got!r}"))

    for column in ("patient_id", "device_id"):
        reject(frame[column] == "", column, "a non-empty identifier")
    birth_date = pd.to_datetime(frame["birth_date"], format="%Y-%m-%d", errors="coerce")
    reject(birth_date.isna(), "birth_date", "a date YYYY-MM-DD")
    out_of_range = birth_date.notna() & ((birth_date <= pd.Timestamp("1900-01-01")) | (birth_date > pd.Timestamp(today)))
    reject(out_of_range, "birth_date", f"a date after 1900-01-01 and not after {today.isoformat()}")
    reject(~frame["sex"].isin(SEXES), "sex", "one of " + ", ".join(SEXES))
    genotype = normalise_genotype(frame["genotype"])
    reject(genotype.isna(), "genotype", "one of " + GENOTYPE_EXAMPLES)
    frame["genotype"] = genotype.fillna(frame["genotype"])
    baseline = pd.to_numeric(frame["baseline_spo2"].where(frame["baseline_spo2"] != ""), errors="coerce")
    bad_baseline = (frame["baseline_spo2"] != "") & (baseline.isna() | (baseline < 50) | (baseline > 100))
    reject(bad_baseline, "baseline_spo2", "empty or a number from 50 to 100")

    duplicated_device = frame["device_id"].duplicated(keep="first") & (frame["device_id"] != "")
    first_line = line.groupby(frame["device_id"]).transform("min")
    for number, device, first in zip(line[duplicated_device], frame.loc[duplicated_device, "device_id"], first_line[duplicated_device]):
        errors.append((int(number), f"line {number}, column device_id: expected each device once, got {device!r} again (first on line {first})"))

    # A patient with several devices must have the same patient columns on every line.
    for column in ("birth_date", "sex", "genotype", "care_team", "baseline_spo2"):
        distinct = frame.groupby("patient_id")[column].transform("nunique")
        first_value = frame.groupby("patient_id")[column].transform("first")
        conflicting = (distinct > 1) & (frame[column] != first_value) & (frame["patient_id"] != "")
        for number, patient, got, expected in zip(line[conflicting], frame.loc[conflicting, "patient_id"], frame.loc[conflicting, column], first_value[conflicting]):
            errors.append((int(number), f"line {number}, column {column}: expected {expected!r} as on the first line of patient {patient!r}, got {got!r}"))

    if errors:
        raise RegistryError(path, [message for _, message in sorted(errors)])
    return pd.DataFrame(
        {
            "patient_id": frame["patient_id"],
            "birth_date": birth_date.dt.date,
            "sex": frame["sex"],
            "genotype": frame["genotype"],
            "device_id": frame["device_id"],
            "care_team": frame["care_team"].where(frame["care_team"] != ""),
            "baseline_spo2": baseline,
        }
    )


def import_registry(csv_path: str | Path, database_url: str, *, pseudonym_key: str) -> dict:
    """Validate ``csv_path`` and upsert it into the registry tables in one transaction.

    Returns counts: ``lines``, ``patients_inserted``, ``patients_updated``, ``devices_inserted``,
    ``devices_updated`` (unchanged rows count in neither). Raises :class:`RegistryError` before
    writing anything when a line is invalid. Devices missing from the file are left as they are.
    """
    registry = read_registry_csv(csv_path)
    patients = registry.drop(columns=["device_id"]).drop_duplicates("patient_id")
    with connect(database_url, application_name="kidjamo-registry") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        connection.execute(
            "CREATE TEMP TABLE registry_staging (patient_id text, birth_date date, sex text, genotype text,"
            " device_id text, care_team text, baseline_spo2 real) ON COMMIT DROP"
        )
        with connection.cursor() as cursor, cursor.copy("COPY registry_staging FROM STDIN (FORMAT csv)") as copy:
            copy.write(registry[COLUMNS].to_csv(index=False, header=False, na_rep=""))
        patient_rows = connection.execute(
            """
            INSERT INTO kidjamo.patients AS p (patient_id, birth_date, sex, genotype, care_team, baseline_spo2)
            SELECT DISTINCT ON (patient_id) patient_id, birth_date, sex, genotype, care_team, baseline_spo2
            FROM registry_staging ORDER BY patient_id
            ON CONFLICT (patient_id) DO UPDATE SET
                birth_date = excluded.birth_date, sex = excluded.sex, genotype = excluded.genotype,
                care_team = excluded.care_team, baseline_spo2 = excluded.baseline_spo2, updated_at = now()
            WHERE (p.birth_date, p.sex, p.genotype, p.care_team, p.baseline_spo2)
                  IS DISTINCT FROM (excluded.birth_date, excluded.sex, excluded.genotype, excluded.care_team, excluded.baseline_spo2)
            RETURNING (xmax = 0) AS inserted
            """
        ).fetchall()
        device_rows = connection.execute(
            """
            INSERT INTO kidjamo.devices AS d (device_id, patient_id, active)
            SELECT device_id, patient_id, true FROM registry_staging
            ON CONFLICT (device_id) DO UPDATE SET patient_id = excluded.patient_id, active = true, updated_at = now()
            WHERE (d.patient_id, d.active) IS DISTINCT FROM (excluded.patient_id, true)
            RETURNING (xmax = 0) AS inserted
            """
        ).fetchall()
        ensure_pseudonyms(connection, pseudonym_key)
        counts = {
            "lines": len(registry),
            "patients": len(patients),
            "patients_inserted": sum(1 for (inserted,) in patient_rows if inserted),
            "patients_updated": sum(1 for (inserted,) in patient_rows if not inserted),
            "devices_inserted": sum(1 for (inserted,) in device_rows if inserted),
            "devices_updated": sum(1 for (inserted,) in device_rows if not inserted),
        }
        record_audit_event(connection, "registry_import", {"file": str(csv_path), **counts})
    return counts


def load_registry(database_url: str) -> pd.DataFrame:
    """Every device with its patient: the lookup the bronze and silver steps join on.

    Columns: ``device_id, patient_id, birth_date`` (datetime64), ``sex, genotype, care_team,
    baseline_spo2`` (float, NaN when unknown), ``device_active`` (bool). One row per device.
    """
    with connect(database_url, application_name="kidjamo-registry") as connection:
        connection.execute(f"SET LOCAL ROLE {PIPELINE_ROLE}")
        with connection.cursor() as cursor:
            buffer = io.BytesIO()
            with cursor.copy(
                "COPY (SELECT d.device_id, d.patient_id, p.birth_date, p.sex, p.genotype, p.care_team,"
                " p.baseline_spo2, d.active AS device_active"
                " FROM kidjamo.devices AS d JOIN kidjamo.patients AS p USING (patient_id) ORDER BY d.device_id)"
                " TO STDOUT (FORMAT csv, HEADER true)"
            ) as copy:
                for chunk in copy:
                    buffer.write(chunk)
    buffer.seek(0)
    registry = pd.read_csv(
        buffer,
        dtype={"device_id": str, "patient_id": str, "sex": str, "genotype": str, "care_team": str, "baseline_spo2": "float64", "device_active": str},
        keep_default_na=False,
        na_values={"care_team": [""], "baseline_spo2": [""]},
    )
    registry["birth_date"] = pd.to_datetime(registry["birth_date"], format="%Y-%m-%d").astype("datetime64[ns]")
    registry["device_active"] = registry["device_active"] == "t"
    return registry

