"""Scores and indices against the published tables (PEWS, NEWS2, NOAA heat index, PSI)."""

from datetime import date, datetime, timezone

import pandas as pd
import pytest

from transforms.clinical import scores
from transforms.clinical.rules import default_rules

RULES = default_rules()


def _one(value):
    return pd.Series([value], dtype="float64")


@pytest.mark.parametrize(
    ("birth", "at", "years"),
    [
        (date(2020, 1, 1), datetime(2021, 1, 1, tzinfo=timezone.utc), 366 / 365.25),
        (date(2026, 8, 27), datetime(2026, 11, 27, 12, tzinfo=timezone.utc), 92.5 / 365.25),
    ],
)
def test_age_years_is_the_fractional_age_at_the_reading(birth, at, years):
    result = scores.age_years(pd.Series([pd.Timestamp(birth)]), pd.Series([at]))
    assert result.iloc[0] == pytest.approx(years)


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0.0, "0-3m"), (0.2499, "0-3m"), (0.25, "3-12m"), (0.999, "3-12m"), (1.0, "1-4y"), (3.999, "1-4y"),
        (4.0, "4-12y"), (11.99, "4-12y"), (12.0, ">12y"), (80.0, ">12y"),
    ],
)
def test_age_band_edges(age, band):
    assert scores.age_band(_one(age), RULES).iloc[0] == band


def test_age_band_of_unknown_age_is_missing():
    assert scores.age_band(pd.Series([None], dtype="float64"), RULES).isna().all()


# Bedside PEWS, Parshuram 2009 (Crit Care 13:R135) Table 1, written from the paper. For each band:
# sub-score 0 "> low and < high"; 1 "≥ high or ≤ low"; 2 and 4 as (high side, low side) values that score.
PEWS_HEART = {
    "0-3m": ((110, 150), (180, 90), (190, 80)),
    "3-12m": ((100, 150), (170, 80), (180, 70)),
    "1-4y": ((90, 120), (150, 70), (170, 60)),
    "4-12y": ((70, 110), (130, 60), (150.5, 50)),  # 4: "> 150 or ≤ 50"
    ">12y": ((60, 100), (120, 49.5), (140, 40)),  # 2: "≥ 120 or < 50"
}
PEWS_RESP = {
    "0-3m": ((29, 61), (81, 19), (91, 15)),
    "3-12m": ((24, 51), (71, 19), (81, 15)),
    "1-4y": ((19, 41), (61, 15), (71, 12)),
    "4-12y": ((19, 31), (41, 14), (51, 10)),
    ">12y": ((11, 17), (23, 10), (30, 9)),
}


@pytest.mark.parametrize(("vital", "table"), [("heart_rate", PEWS_HEART), ("respiratory_rate", PEWS_RESP)])
def test_pews_subscores_follow_the_published_table(vital, table):
    for band, ((low, high), (two_high, two_low), (four_high, four_low)) in table.items():
        values = [low + 1, high - 1, low, high, two_high, two_low, four_high, four_low, None]
        result = scores.pews_band(pd.Series(values, dtype="float64"), pd.Series([band] * len(values)), vital, RULES)
        assert result["pews_subscore"].tolist() == [0, 0, 1, 1, 2, 2, 4, 4, pd.NA], (vital, band)


@pytest.mark.parametrize(("vital", "table"), [("heart_rate", PEWS_HEART), ("respiratory_rate", PEWS_RESP)])
def test_pews_normal_range_is_exclusive(vital, table):
    for band, ((low, high), _, _) in table.items():
        result = scores.pews_band(pd.Series([low, high], dtype="float64"), pd.Series([band, band]), vital, RULES)
        assert result["below_normal"].tolist() == [True, False], (vital, band)
        assert result["above_normal"].tolist() == [False, True], (vital, band)


def test_pews_heart_rate_extreme_above_150_is_strict_for_4_to_12_years():
    result = scores.heart_rate_pews_band(pd.Series([150.0, 151.0]), pd.Series(["4-12y", "4-12y"]), RULES)
    assert result["extreme_high"].tolist() == [False, True]
    assert result["pews_subscore"].tolist() == [2, 4]


# NEWS2 table (RCP 2017): value -> parameter score
NEWS2_TABLE = {
    "respiratory_rate": [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)],
    "spo2": [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)],
    "heart_rate": [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
    "temperature": [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)],
}
# Values between two published bins score in the more abnormal one.
NEWS2_BETWEEN_BINS = {
    "respiratory_rate": [(8.5, 3), (11.5, 1), (20.5, 2), (24.5, 3)],
    "spo2": [(91.5, 3), (93.5, 2), (95.5, 1)],
    "heart_rate": [(40.5, 3), (50.5, 1), (90.5, 1), (110.5, 2), (130.5, 3)],
    "temperature": [(35.05, 3), (36.05, 1), (38.04, 1), (39.05, 2)],
}
NORMAL = {"respiratory_rate": 16.0, "spo2": 98.0, "heart_rate": 70.0, "temperature": 37.0}


@pytest.mark.parametrize("parameter", list(NEWS2_TABLE))
def test_news2_parameter_scores_follow_the_published_table(parameter):
    for value, expected in NEWS2_TABLE[parameter]:
        vitals = {name: _one(value if name == parameter else normal) for name, normal in NORMAL.items()}
        result = scores.news2_partial(**vitals, age_years=_one(30))
        assert result["news2_partial"].iloc[0] == expected, (parameter, value)
        assert result["news2_max_parameter"].iloc[0] == expected


@pytest.mark.parametrize("parameter", list(NEWS2_BETWEEN_BINS))
def test_news2_values_between_bins_score_in_the_more_abnormal_bin(parameter):
    for value, expected in NEWS2_BETWEEN_BINS[parameter]:
        vitals = {name: _one(value if name == parameter else normal) for name, normal in NORMAL.items()}
        assert scores.news2_partial(**vitals, age_years=_one(30))["news2_partial"].iloc[0] == expected, (parameter, value)


@pytest.mark.parametrize("missing", list(NORMAL))
def test_news2_with_a_missing_parameter_is_incomplete_not_scored_0(missing):
    vitals = {name: _one(None if name == missing else normal) for name, normal in NORMAL.items()}
    vitals["heart_rate"] = _one(None) if missing == "heart_rate" else _one(131)  # scores 3 when measured
    result = scores.news2_partial(**vitals, age_years=_one(30))
    assert result["news2_partial"].isna().all()
    assert result["news2_measured_sum"].iloc[0] == (0 if missing == "heart_rate" else 3)
    assert scores.news2_parameter_scores(**{k: v for k, v in vitals.items()})[missing].isna().all()


def test_news2_partial_sums_the_parameters():
    result = scores.news2_partial(_one(22), _one(93), _one(115), _one(38.5), age_years=_one(40))
    assert result["news2_partial"].iloc[0] == 2 + 2 + 2 + 1
    assert result["news2_max_parameter"].iloc[0] == 2


@pytest.mark.parametrize(("age", "scored"), [(15.99, False), (16.0, True)])
def test_news2_is_for_adults_only(age, scored):
    result = scores.news2_partial(_one(25), _one(90), _one(140), _one(39.5), age_years=_one(age))
    assert result["news2_partial"].notna().iloc[0] == scored


# NWS heat index chart (°F): (temperature, relative humidity) -> heat index, rounded
NWS_CHART = [((80, 40), 80), ((90, 50), 95), ((90, 70), 106), ((100, 40), 109), ((96, 60), 116)]


@pytest.mark.parametrize(("inputs", "chart_f"), NWS_CHART)
def test_heat_index_matches_the_nws_chart(inputs, chart_f):
    fahrenheit, humidity = inputs
    result = scores.heat_index_c(_one((fahrenheit - 32) * 5 / 9), _one(humidity))
    assert result["heat_index_c"].iloc[0] * 9 / 5 + 32 == pytest.approx(chart_f, abs=1.0)
    assert not result["heat_index_unknown"].iloc[0]


def test_heat_index_without_humidity_is_unknown():
    result = scores.heat_index_c(_one(35.0), pd.Series([None], dtype="float64"))
    assert result["heat_index_c"].isna().all()
    assert result["heat_index_unknown"].iloc[0]


def test_the_ambient_temperature_is_no_lower_bound_of_the_heat_index():
    # NWS chart: 95 °F (35 °C) at 70 % RH is a heat index of 124 °F (about 51 °C)
    humid = scores.heat_index_c(_one(35.0), _one(70))["heat_index_c"].iloc[0]
    assert humid * 9 / 5 + 32 == pytest.approx(124, abs=1.5)


def test_heat_index_low_humidity_adjustment_lowers_the_value():
    dry = scores.heat_index_c(_one((100 - 32) * 5 / 9), _one(5))["heat_index_c"].iloc[0] * 9 / 5 + 32
    assert dry == pytest.approx(94.18 - 1.68, abs=0.05)  # Rothfusz 94.18 minus the dry-air adjustment 1.68


def test_heat_index_high_humidity_adjustment_raises_the_value():
    humid = scores.heat_index_c(_one((84 - 32) * 5 / 9), _one(90))["heat_index_c"].iloc[0] * 9 / 5 + 32
    assert humid == pytest.approx(98.04 + 0.3, abs=0.05)  # Rothfusz 98.04 plus (90-85)/10 * (87-84)/5


@pytest.mark.parametrize(
    ("t", "hr", "psi"),
    [(37.0, 70.0, 0.0), (39.5, 180.0, 10.0), (38.25, 125.0, 5.0), (41.0, 200.0, 10.0), (36.0, 60.0, 0.0)],
)
def test_physiological_strain_index_moran_1998(t, hr, psi):
    result = scores.physiological_strain_index(_one(t), _one(hr), _one(37.0), _one(70.0))
    assert result.iloc[0] == pytest.approx(psi)
