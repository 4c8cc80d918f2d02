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

Y_DOMAINS = {"spo2": (70, 100), "heart_rate": (40, 200), "temperature": (34, 41), "respiratory_rate": (5, 70),
             "hydration_pct": (30, 100), "pain_scale": (0, 10)}


def _vital_chart(series: pd.DataFrame, vital: str, lines: list[tuple[str, float]], alerts: pd.DataFrame,
                 t: Translator) -> alt.LayerChart:
    title = f"{t(vital)} ({UNITS[vital]})"
    frame = series[["bucket", vital, f"{vital}_min", f"{vital}_max"]].rename(
        columns={vital: "value", f"{vital}_min": "low", f"{vital}_max": "high"})
    low, high = Y_DOMAINS[vital]
    present = frame["value"].dropna()
    domain = [min(low, float(present.min())) if len(present) else low,
              max(high, float(present.max())) if len(present) else high]
    x = alt.X("bucket:T", title=None, axis=alt.Axis(labelOverlap=True))
    y = alt.Y("value:Q", title=title, scale=alt.Scale(domain=domain, nice=False))
    base = alt.Chart(frame)
    band = base.mark_area(opacity=0.25, invalid=None).encode(x=x, y=alt.Y("low:Q", scale=alt.Scale(domain=domain)),
                                                            y2="high:Q")
    line = base.mark_line(invalid=None, strokeWidth=1.5).encode(
        x=x, y=y, tooltip=[alt.Tooltip("bucket:T", title=t("time"), format="%d %b %H:%M"),
                           alt.Tooltip("value:Q", title=title, format=".1f")])
    layers = [band, line]
    if lines:
        rules = pd.DataFrame([{"value": value, "label": f"{t('threshold')} {rule_id} {value:g}"} for rule_id, value in lines])
        rule_chart = alt.Chart(rules)
        layers.append(rule_chart.mark_rule(strokeDash=[6, 4], color="#8a4b00").encode(y="value:Q", tooltip=["label:N"]))
        layers.append(rule_chart.mark_text(align="left", dx=4, dy=-6, fontSize=10, color="#8a4b00").encode(
            y="value:Q", text="label:N", x=alt.value(0)))
    if len(alerts):
        layers.append(alt.Chart(alerts).mark_rule(strokeWidth=2, color="#b00020").encode(
            x="first_reading_at:T", tooltip=["label:N"]))
        layers.append(alt.Chart(alerts).mark_text(dy=8, fontSize=11, color="#b00020", align="left", dx=3).encode(
            x="first_reading_at:T", y=alt.value(0), text="marker:N"))
    return alt.layer(*layers).properties(width="container", height=120)


def patient_charts(series: pd.DataFrame, thresholds: dict[str, list[tuple[str, float]]], alerts: list[dict],
                   t: Translator) -> dict:
    """The Vega-Lite specification (a dict) of the patient page's six charts."""
    alert_frame = pd.DataFrame(
        [{"first_reading_at": a["first_reading_at"], "marker": f"{SEVERITY_ICONS[a['severity']]} {a['rule_id']}",
          "label": f"#{a['alert_id']} {t('severity_' + a['severity'])} — {a['title'] or a['rule_id']}"} for a in alerts],
        columns=["first_reading_at", "marker", "label"])
    start = series["bucket"].min() if len(series) else None
    if start is not None and len(alert_frame):
        # An alert that began before the period is marked at its start.
        alert_frame["first_reading_at"] = pd.to_datetime(alert_frame["first_reading_at"], utc=True).clip(lower=start)
    charts = [_vital_chart(series, vital, thresholds.get(vital, []), alert_frame, t) for vital in VITALS]
    spec = alt.vconcat(*charts).resolve_scale(x="shared").configure_view(stroke=None).configure_axis(
        labelFontSize=11, titleFontSize=12)
    return spec.to_dict()
