"""Clinical scores and indices, vectorized over pandas Series (one value per reading).

Published tables: PEWS age bands (Parshuram 2009), NEWS2 (RCP 2017), the NOAA heat
index (Rothfusz regression with its adjustments) and the physiological strain index (Moran 1998).
Missing inputs give missing outputs: a NEWS2 parameter that was not measured is unknown, never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.clinical.rules import Bound, RuleSet, VitalBand

DAYS_PER_YEAR = 365.25
NEWS2_MIN_AGE_YEARS = 16  # NEWS2 is validated for adults only


def age_years(birth_date: pd.Series, at: pd.Series) -> pd.Series:
    """Age in (fractional) years at each reading's time; NaN where either date is missing."""
    birth = pd.to_datetime(birth_date, utc=True)
    moment = pd.to_datetime(at, utc=True)
    days = (moment.dt.tz_convert("UTC").dt.tz_localize(None) - birth.dt.tz_convert("UTC").dt.tz_localize(None))
    return (days / pd.Timedelta(days=1)).astype("float64") / DAYS_PER_YEAR


def age_band(age_years: pd.Series, rules: RuleSet) -> pd.Series:
    """PEWS band id of each age ("0-3m", "3-12m", "1-4y", "4-12y", ">12y"); NA when unknown or negative."""
    ages = pd.Series(age_years, dtype="float64")
    conditions = [(ages >= band.min_years) & (ages < band.max_years) for band in rules.age_bands]
    labels = np.select(conditions, [band.id for band in rules.age_bands], default="")
    return pd.Series(labels, index=ages.index, dtype="string").replace("", pd.NA)


def _compare(values, bound: Bound):
    """values <op> bound (NaN compares False); works on Series and numpy arrays alike."""
    return {">": values > bound.value, ">=": values >= bound.value,
            "<": values < bound.value, "<=": values <= bound.value}[bound.op]


def _band_lookup(band_ids: pd.Series, vital: str, rules: RuleSet) -> dict[str, VitalBand]:
    return {band.id: getattr(band, vital) for band in rules.age_bands}


def pews_band(values: pd.Series, band_ids: pd.Series, vital: str, rules: RuleSet) -> pd.DataFrame:
    """Where each value sits in its age band's Bedside PEWS item for ``vital`` (heart_rate or respiratory_rate).

    Columns (booleans, False when the value or the band is unknown): ``above_normal`` /
    ``below_normal`` (at or beyond an edge of the exclusive normal range), ``intermediate_high`` /
    ``intermediate_low``, ``extreme_high`` / ``extreme_low``; and ``pews_subscore``, the published
    item sub-score 0, 1, 2 or 4 (Parshuram 2009, Table 1; NA when unknown). A wearable measures two
    of the seven Bedside PEWS items, so no total PEWS is computed from these.
    """
    values = pd.Series(values, dtype="float64")
    index = values.index
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    ids = pd.Series(band_ids, index=index, dtype="string").to_numpy(dtype=object, na_value=None)
    normal_low = np.full(len(numbers), np.nan)
    normal_high = np.full(len(numbers), np.nan)
    sides = {name: np.zeros(len(numbers), dtype=bool)
             for name in ("intermediate_high", "intermediate_low", "extreme_high", "extreme_low")}
    with np.errstate(invalid="ignore"):
        for band_id, band in _band_lookup(band_ids, vital, rules).items():
            in_band = ids == band_id
            if not in_band.any():
                continue
            normal_low[in_band] = band.normal[0]
            normal_high[in_band] = band.normal[1]
            for name, flags in sides.items():
                flags |= in_band & _compare(numbers, getattr(band, name))
        # The published normal range is exclusive ("> 110 and < 150"): an edge value already scores 1.
        above = numbers >= normal_high
        below = numbers <= normal_low
    known = ~np.isnan(numbers) & ~np.isnan(normal_low)
    extreme = sides["extreme_high"] | sides["extreme_low"]
    intermediate = sides["intermediate_high"] | sides["intermediate_low"]
    score = np.select([extreme, intermediate, above | below], [4, 2, 1], default=0)
    return pd.DataFrame(
        {
            "above_normal": above,
            "below_normal": below,
            **sides,
            "pews_subscore": pd.Series(score, index=index).astype("Int16").where(pd.Series(known, index=index), pd.NA),
        },
        index=index,
    )


def heart_rate_pews_band(heart_rate: pd.Series, band_ids: pd.Series, rules: RuleSet) -> pd.DataFrame:
    """PEWS heart-rate position by age band (see :func:`pews_band`)."""
    return pews_band(heart_rate, band_ids, "heart_rate", rules)


def respiratory_rate_pews_band(respiratory_rate: pd.Series, band_ids: pd.Series, rules: RuleSet) -> pd.DataFrame:
    """PEWS respiratory-rate position by age band (see :func:`pews_band`)."""
    return pews_band(respiratory_rate, band_ids, "respiratory_rate", rules)


def _news2_parameter(values: pd.Series, bins: list[tuple[pd.Series, int]]) -> pd.Series:
    """The first matching bin's score, 0 in the normal bin; NA when the value is missing (never 0)."""
    conditions = [condition.fillna(False).to_numpy(dtype=bool) for condition, _ in bins]
    scored = pd.Series(np.select(conditions, [score for _, score in bins], default=0), index=values.index)
    return scored.astype("Int16").where(values.notna(), pd.NA)


def news2_parameter_scores(respiratory_rate, spo2, heart_rate, temperature) -> pd.DataFrame:
    """NEWS2 score of each measured parameter (RCP 2017, SpO2 scale 1); NA where it was not measured.

    The published bins are on whole numbers (temperature on tenths); a value between two bins
    (e.g. a heart rate of 90.5, a temperature of 38.04 or 35.05) falls in the more abnormal one,
    so nothing is under-scored.
    """
    rr = pd.Series(respiratory_rate, dtype="float64")
    sat = pd.Series(spo2, dtype="float64", index=rr.index)
    hr = pd.Series(heart_rate, dtype="float64", index=rr.index)
    temp = pd.Series(temperature, dtype="float64", index=rr.index)
    return pd.DataFrame(
        {
            # <= 8: 3 | 9-11: 1 | 12-20: 0 | 21-24: 2 | >= 25: 3
            "respiratory_rate": _news2_parameter(rr, [(rr < 9, 3), (rr < 12, 1), (rr > 24, 3), (rr > 20, 2)]),
            # <= 91: 3 | 92-93: 2 | 94-95: 1 | >= 96: 0
            "spo2": _news2_parameter(sat, [(sat < 92, 3), (sat < 94, 2), (sat < 96, 1)]),
            # <= 40: 3 | 41-50: 1 | 51-90: 0 | 91-110: 1 | 111-130: 2 | >= 131: 3
            "heart_rate": _news2_parameter(hr, [(hr < 41, 3), (hr < 51, 1), (hr > 130, 3), (hr > 110, 2), (hr > 90, 1)]),
            # <= 35.0: 3 | 35.1-36.0: 1 | 36.1-38.0: 0 | 38.1-39.0: 1 | >= 39.1: 2
            "temperature": _news2_parameter(temp, [(temp < 35.1, 3), (temp < 36.1, 1), (temp > 39.0, 2), (temp > 38.0, 1)]),
        }
    )


def news2_partial(respiratory_rate, spo2, heart_rate, temperature, age_years) -> pd.DataFrame:
    """Partial NEWS2 (what a wearable measures; air and alert score 0) for adults (>= 16 y).

    Columns, nullable Int16, NA for children and unknown ages: ``news2_partial``, the sum of the
    four measured parameters, NA when any of them is missing (an incomplete score is unknown, not
    a lower one); ``news2_max_parameter``, the highest score among the parameters measured;
    ``news2_measured_sum``, the sum over the parameters measured (a lower bound of the score when
    some are missing, which the news2 rule still acts on).
    """
    scores = news2_parameter_scores(respiratory_rate, spo2, heart_rate, temperature)
    ages = pd.Series(age_years, dtype="float64", index=scores.index)
    adult = (ages >= NEWS2_MIN_AGE_YEARS).fillna(False)
    complete = scores.notna().all(axis=1)
    measured = scores.notna().any(axis=1)
    measured_sum = scores.sum(axis=1, skipna=True).astype("Int16")
    return pd.DataFrame(
        {
            "news2_partial": measured_sum.where(adult & complete, pd.NA),
            "news2_max_parameter": scores.max(axis=1, skipna=True).astype("Int16").where(adult & measured, pd.NA),
            "news2_measured_sum": measured_sum.where(adult & measured, pd.NA),
        }
    )


def heat_index_c(ambient_temp, ambient_humidity) -> pd.DataFrame:
    """NOAA/NWS heat index in °C; unknown (NaN) where humidity is missing.

    Columns ``heat_index_c`` and ``heat_index_unknown`` (True when the temperature is known but the
    humidity is not). Without humidity the ambient temperature is no bound of the heat index either
    way: 35 °C is a heat index of about 50 °C at 70 % RH, and of less than 35 °C in dry air.
    Follows https://www.wpc.ncep.noaa.gov/html/heatindex_equation.shtml: Steadman's simple formula
    below 80 °F, else the Rothfusz regression with the low- and high-humidity adjustments.
    """
    celsius = pd.Series(ambient_temp, dtype="float64")
    humidity = pd.Series(ambient_humidity, dtype="float64", index=celsius.index)
    t = celsius * 9 / 5 + 32
    rh = humidity
    simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
    rothfusz = (
        -42.379 + 2.04901523 * t + 10.14333127 * rh - 0.22475541 * t * rh - 0.00683783 * t * t
        - 0.05481717 * rh * rh + 0.00122874 * t * t * rh + 0.00085282 * t * rh * rh - 0.00000199 * t * t * rh * rh
    )
    dry = (rh < 13) & (t >= 80) & (t <= 112)
    dry_adjustment = ((13 - rh) / 4) * np.sqrt(((17 - (t - 95).abs()) / 17).clip(lower=0))
    humid = (rh > 85) & (t >= 80) & (t <= 87)
    humid_adjustment = ((rh - 85) / 10) * ((87 - t) / 5)
    regression = rothfusz - dry_adjustment.where(dry, 0) + humid_adjustment.where(humid, 0)
    fahrenheit = simple.where((simple + t) / 2 < 80, regression)
    return pd.DataFrame(
        {
            "heat_index_c": ((fahrenheit - 32) * 5 / 9).where(humidity.notna()),
            "heat_index_unknown": humidity.isna() & celsius.notna(),
        }
    )


def physiological_strain_index(temperature, heart_rate, temperature_baseline, heart_rate_baseline) -> pd.Series:
    """Moran 1998 PSI = 5(T-T0)/(39.5-T0) + 5(HR-HR0)/(180-HR0), clipped to its 0-10 scale.

    Validated in adults with core temperature: informational only (no rule uses it).
    """
    t = pd.Series(temperature, dtype="float64")
    hr = pd.Series(heart_rate, dtype="float64", index=t.index)
    t0 = pd.Series(temperature_baseline, dtype="float64", index=t.index)
    hr0 = pd.Series(heart_rate_baseline, dtype="float64", index=t.index)
    thermal = 5 * (t - t0) / (39.5 - t0).where(39.5 - t0 > 0)
    cardiac = 5 * (hr - hr0) / (180 - hr0).where(180 - hr0 > 0)
    return (thermal + cardiac).clip(lower=0, upper=10)
