"""Vega-Lite specifications of the patient page, built with Altair and drawn by the vendored vega-embed.

One chart per vital, stacked: the bucket mean as a line (broken where no reading came), the
bucket's min-max as a band, the patient's own thresholds as dashed rules with their rule id, and
the alerts of the period as vertical markers labelled with their severity (text, not colour only).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from care.i18n import SEVERITY_ICONS, UNITS, Translator
from care.queries import VITALS

#: Drawn width; the page's script sets each chart to the width of the screen before drawing
#: (Vega-Lite's "container" width does not apply inside a vertical concatenation).
CHART_WIDTH = 900
Y_DOMAINS = {"spo2": (70, 100), "heart_rate": (40, 200), "temperature": (34, 41), "respiratory_rate": (5, 70),
             "hydration_pct": (30, 100), "pain_scale": (0, 10)}


def _vital_chart(series: pd.DataFrame, vital: str, lines: list[tuple[str, float]], alerts: pd.DataFrame,
                 t: Translator, time_format: str) -> alt.LayerChart:
    title = f"{t(vital)} ({UNITS[vital]})"
    frame = series[["bucket", vital, f"{vital}_min", f"{vital}_max"]].rename(
        columns={vital: "value", f"{vital}_min": "low", f"{vital}_max": "high"})
    low, high = Y_DOMAINS[vital]
    present = frame["value"].dropna()
    domain = [min(low, float(present.min())) if len(present) else low,
              max(high, float(present.max())) if len(present) else high]
    def time_axis(field: str) -> alt.X:
        return alt.X(f"{field}:T", title=f"{t('time')} (UTC)", scale=alt.Scale(type="utc"),
                     axis=alt.Axis(labelOverlap=True, labelExpr=f"utcFormat(datum.value, '{time_format}')"))

    x = time_axis("bucket")
    y = alt.Y("value:Q", title=title, scale=alt.Scale(domain=domain, nice=False))
    base = alt.Chart(frame)
    band = base.mark_area(opacity=0.25, invalid="break-paths-filter-domains").encode(x=x, y=alt.Y("low:Q", scale=alt.Scale(domain=domain)),
                                                            y2="high:Q")
    line = base.mark_line(invalid="break-paths-filter-domains", strokeWidth=1.5).encode(
        x=x, y=y, tooltip=[alt.Tooltip("bucket:T", title=f"{t('time')} (UTC)", format="%d %b %H:%M", formatType="utc"),
                           alt.Tooltip("value:Q", title=title, format=".1f")])
    # Points too: a bucket between two gaps has no line to draw.
    points = base.mark_point(size=8, filled=True, opacity=0.8).encode(x=x, y=y)
    layers = [band, line, points]
    if lines:
        rules = pd.DataFrame([{"value": value, "label": f"{t('threshold')} {rule_id} {t.number(value, 1)}"}
                              for rule_id, value in lines])
        rule_chart = alt.Chart(rules)
        layers.append(rule_chart.mark_rule(strokeDash=[6, 4], color="#8a4b00").encode(y="value:Q", tooltip=["label:N"]))
        # Labels alternate between the left and right ends so that close thresholds stay readable.
        left, right = rules.iloc[::2], rules.iloc[1::2]
        layers.append(alt.Chart(left).mark_text(align="left", dx=4, dy=-6, fontSize=10, color="#8a4b00").encode(
            y="value:Q", text="label:N", x=alt.value(0)))
        if len(right):
            layers.append(alt.Chart(right).mark_text(align="right", dx=-4, dy=-6, fontSize=10, color="#8a4b00").encode(
                y="value:Q", text="label:N", x=alt.value("width")))
    if len(alerts):
        at = time_axis("first_reading_at")
        layers.append(alt.Chart(alerts).mark_rule(strokeWidth=2, color="#b00020").encode(x=at, tooltip=["label:N"]))
        # Written leftwards from the marker (the newest alerts sit at the right edge), one line per alert.
        layers.append(alt.Chart(alerts).mark_text(fontSize=11, color="#b00020", align="right", dx=-3).encode(
            x=at, y=alt.Y("line:Q", scale=None), text="marker:N"))
    return alt.layer(*layers).properties(width=CHART_WIDTH, height=120)


def patient_charts(series: pd.DataFrame, thresholds: dict[str, list[tuple[str, float]]], alerts: list[dict],
                   t: Translator) -> dict:
    """The Vega-Lite specification (a dict) of the patient page's six charts."""
    alert_frame = pd.DataFrame(
        [{"first_reading_at": a["first_reading_at"], "marker": f"{SEVERITY_ICONS[a['severity']]} {a['rule_id']}",
          "label": f"#{a['alert_id']} {t('severity_' + a['severity'])} — {a['title'] or a['rule_id']}",
          "line": 10 + 12 * (i % 8)} for i, a in enumerate(alerts)],
        columns=["first_reading_at", "marker", "label", "line"])
    start = series["bucket"].min() if len(series) else None
    if start is not None and len(alert_frame):
        # An alert that began before the period is marked at its start.
        alert_frame["first_reading_at"] = pd.to_datetime(alert_frame["first_reading_at"], utc=True).clip(lower=start)
    several_days = len(series) > 1 and series["bucket"].iloc[-1] - series["bucket"].iloc[0] > pd.Timedelta(days=1)
    time_format = "%d %b %H:%M" if several_days else "%H:%M"
    charts = [_vital_chart(series, vital, thresholds.get(vital, []), alert_frame, t, time_format) for vital in VITALS]
    spec = alt.vconcat(*charts).resolve_scale(x="shared").configure_view(stroke=None).configure_axis(
        labelFontSize=11, titleFontSize=12)
    return spec.to_dict()
