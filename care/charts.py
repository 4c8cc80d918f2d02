"""Vega-Lite specifications of the patient page, built with Altair and drawn by the vendored vega-embed.

One chart per vital, stacked: the bucket mean as a line (broken where no reading came) with its
points, the bucket's min-max as a band, the patient's own thresholds as dashed rules labelled with
their rule id, and the alerts of the period as vertical markers labelled with their severity icon
and rule (text, not colour only).

Times are drawn in the care team's time zone (``KIDJAMO_CARE_TIMEZONE``), named on the time axis.
Vega formats times either in UTC or in the *browser's* zone, so the data carry the team's
wall-clock times written as UTC and the axis formats them as UTC: a ward PC set to another zone
still shows the team's times.

Building a chart with Altair costs far more than a page may (hundreds of milliseconds), so the
specification is built once per language and time format with *named* datasets, and each page
only fills ``datasets`` with the patient's rows.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache

import altair as alt
import pandas as pd

from care.i18n import SEVERITY_ICONS, UNITS, Translator
from care.queries import VITALS

#: Drawn width; the page's script sets each chart to the width of the screen before drawing
#: (Vega-Lite's "container" width does not apply inside a vertical concatenation).
CHART_WIDTH = 900
#: The y axis always spans at least these ranges (wider when a value or threshold lies outside).
Y_EXTENTS = {"spo2": (70, 100), "heart_rate": (40, 200), "temperature": (34, 41), "respiratory_rate": (5, 70),
             "hydration_pct": (30, 100), "pain_scale": (0, 10)}
THRESHOLD_COLOUR = "#8a4b00"
ALERT_COLOUR = "#b00020"


def _vital_chart(vital: str, t: Translator, time_format: str) -> alt.LayerChart:
    title = f"{t(vital)} ({UNITS[vital]})"
    time_title = f"{t('time')} ({t.zone_name})"

    def time_axis(field: str) -> alt.X:
        return alt.X(f"{field}:T", title=time_title, scale=alt.Scale(type="utc"),
                     axis=alt.Axis(labelOverlap=True, labelExpr=f"utcFormat(datum.value, '{time_format}')"))

    x = time_axis("bucket")
    y = alt.Y(f"{vital}:Q", title=title, scale=alt.Scale(zero=False, nice=False))
    series = alt.Chart(alt.NamedData(name="series"))
    band = series.mark_area(opacity=0.25, invalid="break-paths-filter-domains").encode(
        x=x, y=alt.Y(f"{vital}_min:Q"), y2=f"{vital}_max:Q")
    line = series.mark_line(invalid="break-paths-filter-domains", strokeWidth=1.5).encode(
        x=x, y=y, tooltip=[alt.Tooltip("bucket:T", title=time_title, format="%d %b %H:%M", formatType="utc"),
                           alt.Tooltip(f"{vital}:Q", title=title, format=".1f")])
    # Points too: a bucket between two gaps has no line to draw.
    points = series.mark_point(size=8, filled=True, opacity=0.8).encode(x=x, y=y)
    # Invisible: makes the y scale span the vital's usual range whatever the data.
    extent = alt.Chart(alt.NamedData(name=f"extent_{vital}")).mark_rule(opacity=0).encode(y="value:Q")
    thresholds = alt.Chart(alt.NamedData(name=f"thresholds_{vital}"))
    rules = thresholds.mark_rule(strokeDash=[6, 4], color=THRESHOLD_COLOUR).encode(y="value:Q", tooltip=["label:N"])
    # Labels alternate between the left and right ends so that close thresholds stay readable.
    left = thresholds.transform_filter("datum.side == 'left'").mark_text(
        align="left", dx=4, dy=-6, fontSize=10, color=THRESHOLD_COLOUR).encode(y="value:Q", text="label:N", x=alt.value(0))
    right = thresholds.transform_filter("datum.side == 'right'").mark_text(
        align="right", dx=-4, dy=-6, fontSize=10, color=THRESHOLD_COLOUR).encode(
        y="value:Q", text="label:N", x=alt.value("width"))
    alerts = alt.Chart(alt.NamedData(name="alerts"))
    at = time_axis("first_reading_at")
    markers = alerts.mark_rule(strokeWidth=2, color=ALERT_COLOUR).encode(x=at, tooltip=["label:N"])
    # Written leftwards from the marker (the newest alerts sit at the right edge), one line per alert.
    marker_text = alerts.mark_text(fontSize=11, color=ALERT_COLOUR, align="right", dx=-3).encode(
        x=at, y=alt.Y("line:Q", scale=None), text="marker:N")
    return alt.layer(band, line, points, extent, rules, left, right, markers, marker_text).properties(
        width=CHART_WIDTH, height=120)


@lru_cache(maxsize=16)
def _template(language: str, zone: str, time_format: str, *, validate: bool = False) -> dict:
    t = Translator(language, zone)
    charts = [_vital_chart(vital, t, time_format) for vital in VITALS]
    spec = alt.vconcat(*charts).resolve_scale(x="shared").configure_view(stroke=None).configure_axis(
        labelFontSize=11, titleFontSize=12)
    # Schema validation costs seconds: tests/care/test_care_charts.py validates every template.
    return spec.to_dict(validate=validate)


def _records(frame: pd.DataFrame, t: Translator) -> list[dict]:
    """Rows for Vega: NaN as null, times as the care team's wall-clock time written as UTC (see above)."""
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
            elif isinstance(value, pd.Timestamp):
                row[key] = value.tz_convert(t.zone).tz_localize(None).isoformat() + "Z"
    return rows


def patient_charts(series: pd.DataFrame, thresholds: dict[str, list[tuple[str, float]]], alerts: list[dict],
                   t: Translator) -> dict:
    """The Vega-Lite specification (a dict) of the patient page's six charts, with the patient's data."""
    several_days = len(series) > 1 and series["bucket"].iloc[-1] - series["bucket"].iloc[0] > pd.Timedelta(days=1)
    spec = copy.deepcopy(_template(t.language, t.zone_name, "%d %b %H:%M" if several_days else "%H:%M"))
    start = series["bucket"].min() if len(series) else None
    markers = [{"first_reading_at": max(pd.Timestamp(a["first_reading_at"]), start) if start is not None
                else pd.Timestamp(a["first_reading_at"]),  # an alert that began before the period is marked at its start
                "marker": f"{SEVERITY_ICONS[a['severity']]} {a['rule_id']}",
                "label": f"#{a['alert_id']} {t('severity_' + a['severity'])} — {t.rule_title(a['title'], a['rule_id'])}",
                "line": 10 + 12 * (i % 8)} for i, a in enumerate(alerts)]
    datasets = {"series": _records(series, t), "alerts": _records(pd.DataFrame(markers), t)}
    for vital in VITALS:
        datasets[f"extent_{vital}"] = [{"value": value} for value in Y_EXTENTS[vital]]
        datasets[f"thresholds_{vital}"] = [
            {"value": value, "label": f"{t('threshold')} {rule_id} {t.number(value, 1)}",
             "side": "left" if i % 2 == 0 else "right"} for i, (rule_id, value) in enumerate(thresholds.get(vital, []))]
    spec["datasets"] = datasets
    return spec
