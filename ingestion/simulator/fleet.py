"""A realistic fleet of wearable sensors: patients, their physiology, and injectable scenarios.

Every device sends one reading every 30 s (each device on its own phase within the 30 s). Values
come from per-patient baselines (age band, genotype), a day/night rhythm in local time, short
activity bouts, ambient temperature by region and hour, and noise. Randomness is counter-based
(a hash of seed, patient and 30 s tick), so a reading is the same whatever window it is generated
in, and whole fleets are generated with vectorized numpy (100,000 devices x 2 readings in about a
second).

Normal readings stay inside every age band's normal range (docs/clinical-rules.md): SpO2 >= 94.5 and within
1.5 points of the patient's baseline, temperature 36.1-37.6, heart and respiratory rates inside
the PEWS normal band (and NEWS2's zero band for adults), ambient 16-31 degC, battery >= 35 %.
Scenarios (:class:`Scenario`) push one patient out of that envelope for a time window.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ingestion.simulator.payloads import MALFORMATIONS, payloads_from_table, utc_instant

READING_INTERVAL_S = 30
GENOTYPES = ("HbSS", "HbSC", "HbSB0", "HbSB+")
GENOTYPE_WEIGHTS = (0.60, 0.25, 0.07, 0.08)
FIRMWARE_VERSIONS = ("v2.1.3", "v2.1.4", "v2.2.0")
REGISTRY_COLUMNS = ("patient_id", "birth_date", "sex", "genotype", "device_id", "care_team", "baseline_spo2")

# Age bands chosen away from the PEWS band edges, with the physiology kept well inside each band's
# normal range: (weight, min age days, max age days, heart rate range, respiratory rate range).
AGE_BANDS = (
    (0.04, 30, 75, (118.0, 142.0), (33.0, 45.0)),  # 0-3 months
    (0.06, 120, 330, (108.0, 142.0), (28.0, 40.0)),  # 3-12 months
    (0.20, 400, 1430, (95.0, 115.0), (22.0, 32.0)),  # 1-4 years
    (0.35, 1500, 4350, (75.0, 105.0), (20.0, 27.0)),  # 4-12 years
    (0.15, 4420, 5800, (64.0, 92.0), (12.0, 16.0)),  # 12-16 years
    (0.20, 5900, 16400, (62.0, 86.0), (13.0, 16.0)),  # adults (NEWS2 zero band)
)

# Regions of the fleet: (care-team prefix, UTC offset hours, mean ambient degC, daily amplitude).
REGIONS = (
    ("yaounde", 1, 24.0, 4.0),
    ("douala", 1, 27.0, 3.0),
    ("garoua", 1, 27.5, 3.5),
    ("paris", 1, 21.0, 1.5),  # worn indoors: the sensor's ambient is the room's
    ("london", 0, 20.5, 1.5),
)

SCENARIO_KINDS = (
    "hypoxia",
    "fever",
    "acs",
    "pain_crisis",
    "heat_dehydration",
    "flatline",
    "low_battery",
    "dropout",
    "clock_skew",
    "duplicates",
    "malformed",
)
#: Off the 30 s grid on purpose: a skewed timestamp must not collide with the device's own later reading.
CLOCK_SKEW_S = 607
SCENARIO_DOC = {
    "hypoxia": "SpO2 falls from baseline to about 82 % within 2 minutes and stays there (fast-path alert)",
    "fever": "temperature climbs to about 39.3 degC over 10 minutes, heart and respiratory rates rise",
    "acs": "acute chest pattern: SpO2 4-5 points below baseline, fast breathing, 38.8 degC, pain 6",
    "pain_crisis": "vaso-occlusive crisis: pain 7-9, heart rate +20 %, activity 0",
    "heat_dehydration": "ambient 35 degC, activity 6-8, hydration 15+ points below baseline",
    "flatline": "SpO2 and heart rate frozen at their value when the fault starts",
    "low_battery": "battery falls from 14 % towards 3 %",
    "dropout": "the device sends nothing",
    "clock_skew": "the device clock runs 10 min 7 s ahead (future_timestamp in bronze)",
    "duplicates": "every reading is sent twice with the same message_id (a retry)",
    "malformed": "payloads with wrong types, missing fields or out-of-range values",
}


@dataclass(frozen=True)
class Scenario:
    """One injected episode: ``kind`` (see :data:`SCENARIO_KINDS`) for a patient during [start, end)."""

    kind: str
    patient_id: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; expected one of {', '.join(SCENARIO_KINDS)}")
        if utc_instant(self.end) <= utc_instant(self.start):
            raise ValueError(f"scenario {self.kind} for {self.patient_id}: end must be after start")


# --- counter-based randomness ---------------------------------------------------------------------
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(value: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorized over uint64 arrays (wraps on overflow by design)."""
    with np.errstate(over="ignore"):
        z = value + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash(seed: int, stream: int, patient: np.ndarray, tick: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x100000001B3) + np.uint64(stream))
        key = _mix(key ^ patient.astype(np.uint64))
        return _mix(key ^ (tick.astype(np.int64).astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)))


def _uniform(seed: int, stream: int, patient: np.ndarray, tick: np.ndarray) -> np.ndarray:
    return (_hash(seed, stream, patient, tick) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _normal(seed: int, stream: int, patient: np.ndarray, tick: np.ndarray) -> np.ndarray:
    u1 = np.maximum(_uniform(seed, stream, patient, tick), 1e-12)
    u2 = _uniform(seed, stream + 1000, patient, tick)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _reflect(values: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """Fold values back into [low, high] (mirror at the bounds): no pile-up at a bound, unlike clipping."""
    width = np.asarray(high) - np.asarray(low)
    folded = np.mod(values - low, 2 * width)
    return low + np.where(folded > width, 2 * width - folded, folded)


def _epoch(moment: datetime) -> int:
    return int(utc_instant(moment).timestamp())


# --- the fleet ------------------------------------------------------------------------------------
@dataclass
class Fleet:
    """N patients with one device each, their registry data and physiological baselines (numpy arrays)."""

    seed: int
    reference_date: date
    patient_ids: list[str]
    device_ids: list[str]
    birth_dates: list[date]
    sexes: list[str]
    genotypes: list[str]
    care_teams: list[str]
    registry_baseline_spo2: list[float | None]
    age_days: np.ndarray
    spo2_base: np.ndarray
    hr_base: np.ndarray
    hr_low: np.ndarray
    hr_high: np.ndarray
    rr_base: np.ndarray
    rr_low: np.ndarray
    rr_high: np.ndarray
    temp_base: np.ndarray
    hydration_base: np.ndarray
    pain_base: np.ndarray
    region_offset_s: np.ndarray
    ambient_mean: np.ndarray
    ambient_amplitude: np.ndarray
    phase_s: np.ndarray
    battery_phase: np.ndarray
    firmware: np.ndarray
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {patient_id: i for i, patient_id in enumerate(self.patient_ids)}

    def __len__(self) -> int:
        return len(self.patient_ids)

    @classmethod
    def generate(cls, n_patients: int, *, seed: int = 0, reference_date: date | None = None) -> "Fleet":
        """A deterministic fleet of ``n_patients`` (ages infants to adults, mixed genotypes and regions)."""
        if n_patients < 1:
            raise ValueError("a fleet needs at least one patient")
        rng = np.random.default_rng(seed)
        reference = reference_date or datetime.now(timezone.utc).date()
        n = n_patients

        band_weights = np.array([band[0] for band in AGE_BANDS])
        band = rng.choice(len(AGE_BANDS), size=n, p=band_weights / band_weights.sum())
        age_min = np.array([b[1] for b in AGE_BANDS])[band]
        age_max = np.array([b[2] for b in AGE_BANDS])[band]
        age_days = rng.integers(age_min, age_max + 1)
        hr_low = np.array([b[3][0] for b in AGE_BANDS])[band]
        hr_high = np.array([b[3][1] for b in AGE_BANDS])[band]
        rr_low = np.array([b[4][0] for b in AGE_BANDS])[band]
        rr_high = np.array([b[4][1] for b in AGE_BANDS])[band]
        hr_base = hr_low + (hr_high - hr_low) * rng.uniform(0.3, 0.55, n)
        rr_base = rr_low + (rr_high - rr_low) * rng.uniform(0.35, 0.65, n)

        genotype_index = rng.choice(len(GENOTYPES), size=n, p=GENOTYPE_WEIGHTS)
        genotypes = [GENOTYPES[g] for g in genotype_index]
        low_baseline = np.isin(genotype_index, [0, 2])  # HbSS, HbSB0 live with a lower SpO2
        spo2_base = np.round(np.where(low_baseline, rng.uniform(96.0, 97.3, n), rng.uniform(97.3, 98.3, n)), 1)
        registry_has_baseline = rng.uniform(size=n) < 0.7

        region = rng.integers(0, len(REGIONS), n)
        team = rng.integers(0, 3, n)
        care_teams = [f"{REGIONS[r][0]}-{'abc'[t]}" for r, t in zip(region, team)]
        sexes = rng.choice(["F", "M"], size=n).tolist()
        if n >= 50:
            sexes[int(rng.integers(0, n))] = "X"

        width = len(str(max(n, 999_999)))
        patient_ids = [f"patient-{i:0{width}d}" for i in range(1, n + 1)]
        device_ids = [f"device-{i:0{width}d}" for i in range(1, n + 1)]
        return cls(
            seed=seed,
            reference_date=reference,
            patient_ids=patient_ids,
            device_ids=device_ids,
            birth_dates=[reference - timedelta(days=int(days)) for days in age_days],
            sexes=sexes,
            genotypes=genotypes,
            care_teams=care_teams,
            registry_baseline_spo2=[float(v) if has else None for v, has in zip(spo2_base, registry_has_baseline)],
            age_days=age_days,
            spo2_base=spo2_base,
            hr_base=hr_base,
            hr_low=hr_low,
            hr_high=hr_high,
            rr_base=rr_base,
            rr_low=rr_low,
            rr_high=rr_high,
            temp_base=rng.uniform(36.5, 36.85, n),
            hydration_base=rng.uniform(72.0, 85.0, n),
            pain_base=rng.integers(0, 3, n),
            region_offset_s=np.array([REGIONS[r][1] * 3600 for r in region]),
            ambient_mean=np.array([REGIONS[r][2] for r in region]) + rng.uniform(-1.0, 1.0, n),
            ambient_amplitude=np.array([REGIONS[r][3] for r in region]),
            phase_s=rng.integers(0, READING_INTERVAL_S, n),
            battery_phase=rng.uniform(0.0, 1.0, n),
            firmware=np.array(FIRMWARE_VERSIONS)[rng.integers(0, len(FIRMWARE_VERSIONS), n)],
        )

    # --- registry ---------------------------------------------------------------------------------
    def registry_rows(self) -> list[dict]:
        """The patient registry of this fleet (one row per patient and device)."""
        return [
            {
                "patient_id": self.patient_ids[i],
                "birth_date": self.birth_dates[i].isoformat(),
                "sex": self.sexes[i],
                "genotype": self.genotypes[i],
                "device_id": self.device_ids[i],
                "care_team": self.care_teams[i],
                "baseline_spo2": "" if self.registry_baseline_spo2[i] is None else f"{self.registry_baseline_spo2[i]:.1f}",
            }
            for i in range(len(self))
        ]

    def write_registry_csv(self, path: str | Path) -> Path:
        """Write the registry CSV (columns of the layers issue); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REGISTRY_COLUMNS)
            writer.writeheader()
            writer.writerows(self.registry_rows())
        return path

    def patient_index(self, patient_id: str) -> int:
        try:
            return self._index[patient_id]
        except KeyError:
            raise ValueError(f"patient {patient_id!r} is not in this fleet") from None

    # --- readings ---------------------------------------------------------------------------------
    def readings_table(
        self,
        start: datetime,
        end: datetime,
        *,
        scenarios: Sequence[Scenario] = (),
        hypoxia_patient: bool = False,
    ) -> dict[str, np.ndarray]:
        """The readings of [start, end) as flat numpy columns, ordered by time then device.

        Columns: patient (fleet index), epoch (send time, s), timestamp (ISO text, as sent),
        message_id, the eight vitals, battery_level, signal_quality, firmware_version, and
        ``copies`` (2 for a retried reading) and ``malformed`` (a fault kind index, -1 if none).
        """
        start_s, end_s = _epoch(start), _epoch(end)
        n = len(self)
        first_tick = (start_s - self.phase_s + READING_INTERVAL_S - 1) // READING_INTERVAL_S
        last_tick = (end_s - self.phase_s + READING_INTERVAL_S - 1) // READING_INTERVAL_S  # exclusive
        low, high = int(first_tick.min()), int(last_tick.max())
        tick_grid = np.arange(low, high, dtype=np.int64)[:, None]
        valid = (tick_grid >= first_tick[None, :]) & (tick_grid < last_tick[None, :])
        patient = np.broadcast_to(np.arange(n)[None, :], valid.shape)[valid]
        tick = np.broadcast_to(tick_grid, valid.shape)[valid]
        epoch = tick * READING_INTERVAL_S + self.phase_s[patient]
        order = np.argsort(epoch, kind="stable")
        patient, tick, epoch = patient[order], tick[order], epoch[order]
        columns = self._physiology(patient, tick, epoch)
        columns["copies"] = np.ones(len(patient), dtype=np.int8)
        columns["malformed"] = np.full(len(patient), -1, dtype=np.int8)
        columns["skew_s"] = np.zeros(len(patient), dtype=np.int64)
        columns["keep"] = np.ones(len(patient), dtype=bool)
        if hypoxia_patient:
            first = patient == 0
            noise = _normal(self.seed, 90, patient[first], tick[first])
            columns["spo2"][first] = _reflect(81.5 + 0.8 * noise, 79.0, 84.0)
        for scenario in scenarios:
            self._apply(columns, scenario)
        keep = columns.pop("keep")
        columns = {name: values[keep] for name, values in columns.items()}
        sent = columns["epoch"] + columns.pop("skew_s")
        columns["timestamp"] = np.char.add(np.datetime_as_string(sent.astype("datetime64[s]"), unit="s"), "Z")
        return columns

    def readings(self, start: datetime, end: datetime, **options) -> list[dict]:
        """One payload (docs/ingestion.md) per device every 30 s in [start, end), with a ``message_id``.

        ``options`` are those of :meth:`readings_table`: ``scenarios``, and ``hypoxia_patient`` (the
        fleet's first patient has SpO2 < 85 for the whole window).
        """
        return payloads_from_table(self, self.readings_table(start, end, **options))

    def _physiology(self, patient: np.ndarray, tick: np.ndarray, epoch: np.ndarray) -> dict[str, np.ndarray]:
        seed = self.seed
        local_hour = ((epoch + self.region_offset_s[patient]) % 86400) / 3600.0
        circadian = np.cos(2 * np.pi * (local_hour - 16.0) / 24.0)  # peaks mid-afternoon
        awake = (local_hour >= 7.0) & (local_hour < 21.5)

        # Activity bouts: a level per patient and 10-minute slot, higher in bouts, 0 at night.
        slot = epoch // 600
        bout = _uniform(seed, 1, patient, slot) < 0.25
        level = np.where(bout, 3 + np.floor(_uniform(seed, 2, patient, slot) * 3), np.floor(_uniform(seed, 3, patient, slot) * 3))
        activity = np.where(awake, level, 0).astype(np.int64)

        hr_low, hr_high = self.hr_low[patient], self.hr_high[patient]
        heart_rate = self.hr_base[patient] * (1 + 0.05 * circadian + 0.035 * activity) + 2.0 * _normal(seed, 10, patient, tick)
        heart_rate = np.round(_reflect(heart_rate, hr_low, hr_high))

        rr_low, rr_high = self.rr_low[patient], self.rr_high[patient]
        respiratory = self.rr_base[patient] * (1 + 0.03 * circadian + 0.025 * activity) + 1.0 * _normal(seed, 12, patient, tick)
        respiratory = np.round(_reflect(respiratory, rr_low, rr_high))

        spo2_base = self.spo2_base[patient]
        spo2 = spo2_base + 0.35 * _normal(seed, 14, patient, tick) - 0.2 * (activity >= 4)
        spo2 = np.round(_reflect(spo2, np.maximum(spo2_base - 1.5, 94.5), np.minimum(spo2_base + 1.2, 99.6)), 1)

        temperature = self.temp_base[patient] + 0.25 * circadian + 0.04 * activity + 0.08 * _normal(seed, 16, patient, tick)
        temperature = np.round(_reflect(temperature, 36.1, 37.6), 1)

        ambient = self.ambient_mean[patient] + self.ambient_amplitude[patient] * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
        ambient = np.round(_reflect(ambient + 0.3 * _normal(seed, 18, patient, tick), 16.0, 31.0), 1)

        hydration_base = self.hydration_base[patient]
        hydration = hydration_base - 1.5 * (activity >= 3) + 0.8 * _normal(seed, 20, patient, tick)
        hydration = np.round(_reflect(hydration, hydration_base - 5.0, np.minimum(hydration_base + 4.0, 99.0)), 1)

        pain = np.clip(self.pain_base[patient] + (_uniform(seed, 22, patient, epoch // 3600) < 0.15), 0, 3).astype(np.int64)

        # Batteries drain over a day and are recharged overnight: 95 % down to 35 %.
        day_fraction = (epoch / 86400.0 + self.battery_phase[patient]) % 1.0
        battery = np.round(95.0 - 60.0 * day_fraction)
        signal = np.round(_reflect(93.0 + 3.0 * _normal(seed, 24, patient, tick), 80.0, 100.0))

        device_hash = _hash(seed, 30, patient, tick)
        message_id = np.char.add("m-", np.char.mod("%016x", device_hash)) if len(patient) else np.array([], dtype=str)
        return {
            "patient": patient,
            "tick": tick,
            "epoch": epoch,
            "message_id": message_id,
            "spo2": spo2,
            "heart_rate": heart_rate,
            "temperature": temperature,
            "ambient_temp": ambient,
            "respiratory_rate": respiratory,
            "hydration_pct": hydration,
            "activity_level": activity,
            "pain_scale": pain,
            "battery_level": battery,
            "signal_quality": signal,
            "firmware_version": self.firmware[patient],
        }

    def _apply(self, columns: dict[str, np.ndarray], scenario: Scenario) -> None:
        """Change the rows of ``scenario``'s patient inside its window, in place."""
        index = self.patient_index(scenario.patient_id)
        start_s, end_s = _epoch(scenario.start), _epoch(scenario.end)
        rows = np.flatnonzero((columns["patient"] == index) & (columns["epoch"] >= start_s) & (columns["epoch"] < end_s))
        if len(rows) == 0:
            return
        seed, kind = self.seed, scenario.kind
        elapsed = (columns["epoch"][rows] - start_s).astype(np.float64)
        patient, tick = columns["patient"][rows], columns["tick"][rows]
        noise = _normal(seed, 40 + SCENARIO_KINDS.index(kind), patient, tick)
        ramp = lambda seconds: np.clip(elapsed / seconds, 0.0, 1.0)  # noqa: E731 - a local shape helper

        if kind == "hypoxia":
            target = 82.0 + 0.8 * noise
            base = self.spo2_base[index]
            columns["spo2"][rows] = np.round(np.minimum(base + (target - base) * ramp(120), 99.0), 1)
            columns["heart_rate"][rows] = np.round(columns["heart_rate"][rows] * (1 + 0.15 * ramp(120)))
            columns["respiratory_rate"][rows] = np.round(columns["respiratory_rate"][rows] * (1 + 0.3 * ramp(120)))
        elif kind == "fever":
            columns["temperature"][rows] = np.round(columns["temperature"][rows] + (39.3 - 36.7) * ramp(600) + 0.05 * noise, 1)
            columns["heart_rate"][rows] = np.round(columns["heart_rate"][rows] * (1 + 0.18 * ramp(600)))
            columns["respiratory_rate"][rows] = np.round(columns["respiratory_rate"][rows] * (1 + 0.15 * ramp(600)))
        elif kind == "acs":
            columns["spo2"][rows] = np.round(self.spo2_base[index] - 4.5 + 0.3 * noise, 1)
            columns["respiratory_rate"][rows] = np.round(self.rr_high[index] * 1.35 + noise)
            columns["temperature"][rows] = np.round(np.maximum(38.8 + 0.08 * noise, 38.6), 1)
            columns["pain_scale"][rows] = 6
        elif kind == "pain_crisis":
            columns["pain_scale"][rows] = 7 + np.floor(_uniform(seed, 60, patient, tick) * 3).astype(np.int64)
            columns["heart_rate"][rows] = np.round(columns["heart_rate"][rows] * 1.2)
            columns["activity_level"][rows] = 0
        elif kind == "heat_dehydration":
            columns["ambient_temp"][rows] = np.round(35.0 + 0.5 * noise, 1)
            columns["activity_level"][rows] = 6 + np.floor(_uniform(seed, 61, patient, tick) * 3).astype(np.int64)
            columns["hydration_pct"][rows] = np.round(self.hydration_base[index] - 15.0 - 6.0 * ramp(900) + 0.5 * noise, 1)
            columns["heart_rate"][rows] = np.round(columns["heart_rate"][rows] * 1.12)
        elif kind == "flatline":
            columns["spo2"][rows] = columns["spo2"][rows[0]]
            columns["heart_rate"][rows] = columns["heart_rate"][rows[0]]
        elif kind == "low_battery":
            columns["battery_level"][rows] = np.round(np.maximum(14.0 - 11.0 * ramp(3600), 3.0))
        elif kind == "dropout":
            columns["keep"][rows] = False
        elif kind == "clock_skew":
            columns["skew_s"][rows] = CLOCK_SKEW_S
        elif kind == "duplicates":
            columns["copies"][rows] = 2
        elif kind == "malformed":
            columns["malformed"][rows] = (tick % len(MALFORMATIONS)).astype(np.int8)


# --- provisioning: registry and device credentials -------------------------------------------------
def provision_fleet(database_url: str, fleet: Fleet, secrets_path: str | Path, *, pseudonym_key: str) -> None:
    """Import the fleet's registry, issue every device a credential, and write the secrets file.

    The registry CSV is written next to the secrets file (``registry.csv``); the secrets file is a
    JSON object ``{device_id: secret}`` readable by its owner only, which the simulator reads.
    """
    from ingestion.auth import register_devices
    from transforms.registry import import_registry

    secrets_path = Path(secrets_path)
    registry_csv = fleet.write_registry_csv(secrets_path.parent / "registry.csv")
    import_registry(registry_csv, database_url, pseudonym_key=pseudonym_key)
    secrets = register_devices(database_url, fleet.device_ids)
    secrets_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = secrets_path.with_name(f".{secrets_path.name}.tmp")
    with open(temporary, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as handle:
        json.dump(secrets, handle, indent=0)
    os.replace(temporary, secrets_path)


def read_secrets(secrets_path: str | Path) -> dict[str, str]:
    """The ``{device_id: secret}`` file written by :func:`provision_fleet`."""
    return json.loads(Path(secrets_path).read_text())
