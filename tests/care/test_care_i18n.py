"""French and English of the care screen from its Babel catalogues, and times in the care team's zone.

A rule added to rules.yaml, a qualifier added to the alert evaluation or a message added to a
template without its translation fails here.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from care import charts, queries
from care.i18n import LANGUAGES, QUALIFIER, RULE_CONDITION, RULE_TITLE, Translator, catalogue
from kidjamo.settings import Settings
from transforms.alerts import implausible
from transforms.alerts.evaluate import reading_qualifiers

ROOT = Path(__file__).resolve().parents[2]
RULES_YAML = ROOT / "transforms" / "clinical" / "rules.yaml"
TEMPLATES = ROOT / "care" / "templates"


def rules_in_yaml() -> list[dict]:
    """The rules as written in rules.yaml (not through the rule loader, so a rule it would skip counts too)."""
    return yaml.safe_load(RULES_YAML.read_text())["rules"]


@pytest.mark.parametrize("rule", rules_in_yaml(), ids=lambda rule: rule["id"])
def test_every_rule_has_an_english_and_a_french_title(rule):
    english = rule.get("title")
    assert isinstance(english, str) and english.strip(), f"rules.yaml: rule {rule['id']} has no title"
    french = catalogue("fr").get((RULE_TITLE, english))
    assert french, (f"care/locale/fr/LC_MESSAGES/care.po: no French for the title of rule {rule['id']} "
                    f'(msgctxt "{RULE_TITLE}", msgid "{english}")')
    assert Translator("fr").rule_title(english, rule["id"]) == french
    assert Translator("en").rule_title(english, rule["id"]) == english


@pytest.mark.parametrize("rule", rules_in_yaml(), ids=lambda rule: rule["id"])
def test_every_rule_condition_is_said_in_french_with_the_same_numbers(rule):
    english = rule["condition"]
    french = catalogue("fr").get((RULE_CONDITION, english))
    assert french, (f"care/locale/fr/LC_MESSAGES/care.po: no French for the condition of rule {rule['id']} "
                    f'(msgctxt "{RULE_CONDITION}", msgid "{english}")')
    # A translated threshold is a clinical statement: the same numbers, in the same order (French decimal comma).
    assert re.findall(r"\d+(?:[.,]\d+)?", french.replace(",", ".")) == re.findall(r"\d+(?:\.\d+)?", english)
    assert Translator("fr").rule_condition(english) == french and Translator("en").rule_condition(english) == english


def every_qualifier_written() -> list[str]:
    """Each kind of qualifier the alert evaluation writes, with numbers as it writes them."""
    everything = {"spo2_low_confidence": True, "weak_signal": True, "signal_quality": 35.0, "activity_level": 8,
                  "ambient_humidity": None}
    return [*reading_qualifiers(everything, "heat_exposure"),
            *reading_qualifiers({"weak_signal": True, "signal_quality": None}, "hypoxia"),
            implausible.QUALIFIER]


@pytest.mark.parametrize("text", every_qualifier_written())
def test_every_qualifier_the_evaluation_writes_is_said_in_french(text):
    french = Translator("fr").qualifier(text)
    assert french != text, f"care/locale/fr/LC_MESSAGES/care.po: no French for qualifier {text!r} (msgctxt \"{QUALIFIER}\")"
    assert Translator("en").qualifier(text) == text
    assert re.findall(r"\d+", french) == re.findall(r"\d+", text)  # the numbers carried over


def test_a_qualifier_with_a_decimal_number_is_written_with_the_french_comma():
    assert Translator("fr").qualifier("weak sensor signal (quality 40.5 %)") == "signal du capteur faible (qualité 40,5 %)"
    assert Translator("fr").qualifier("a qualifier nobody translated") == "a qualifier nobody translated"


def test_both_catalogues_have_the_same_screen_messages_and_every_one_the_templates_use():
    ids = {language: {key for context, key in catalogue(language) if context is None} for language in LANGUAGES}
    assert ids["fr"] == ids["en"]
    used = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        used |= set(re.findall(r"\bt\('([a-z0-9_]+)'\s*[,)]", text)) | set(re.findall(r"\bL\.([a-z0-9_]+)", text))
    used |= {f"severity_{name}" for name in ("critical", "high", "warning", "info")}
    used |= {f"status_{name}" for name in ("open", "acknowledged", "resolved")}
    used |= {f"window_{name}" for name in queries.WINDOWS} | set(queries.VITALS)
    assert used - ids["en"] == set()


def test_times_are_shown_in_the_care_teams_zone_and_the_zone_is_named():
    at = datetime(2026, 12, 2, 15, 4, 5, tzinfo=timezone.utc)
    douala = Translator("fr", "Africa/Douala")
    assert douala.datetime(at) == "2 déc. 2026, 16:04:05 WAT"
    assert douala.datetime("2026-12-02T15:04:05+00:00") == "2 déc. 2026, 16:04:05 WAT"  # as an alert's evidence keeps it
    assert douala.zone_label(at) == "Africa/Douala (UTC+01:00)"
    assert Translator("en").datetime(at) == "Dec 2, 2026, 3:04:05\u202fPM UTC"
    # A zone with summer time: the offset of the moment shown.
    paris = Translator("fr", "Europe/Paris")
    assert paris.datetime(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)).endswith("14:00:00 CEST")
    assert paris.zone_label(datetime(2026, 7, 1, tzinfo=timezone.utc)) == "Europe/Paris (UTC+02:00)"


def test_the_charts_draw_the_care_teams_wall_clock_and_name_the_zone_on_the_time_axis():
    window = queries.WINDOWS["6h"]
    end = datetime(2026, 12, 2, 16, 0, tzinfo=timezone.utc)
    buckets = pd.date_range(end - window.length, end, freq=window.bucket, inclusive="left", name="bucket")
    frame = pd.DataFrame({"bucket": buckets, "readings": 1.0})
    for vital in queries.VITALS:
        frame[vital] = frame[f"{vital}_min"] = frame[f"{vital}_max"] = 50.0
    alert = {"alert_id": 3, "severity": "critical", "rule_id": "hypoxia", "title": "Low oxygen saturation",
             "first_reading_at": end - pd.Timedelta(hours=1)}
    spec = charts.patient_charts(frame, {}, [alert], Translator("fr", "Africa/Douala"))
    assert spec["datasets"]["series"][0]["bucket"] == "2026-12-02T11:00:00Z"  # 10:00 UTC is 11:00 in Douala
    assert spec["datasets"]["alerts"][0]["first_reading_at"] == "2026-12-02T16:00:00Z"
    assert "Saturation en oxygène basse" in spec["datasets"]["alerts"][0]["label"]
    x = spec["vconcat"][0]["layer"][1]["encoding"]["x"]
    assert x["title"] == "Heure (Africa/Douala)" and x["scale"]["type"] == "utc"
    utc = charts.patient_charts(frame, {}, [], Translator("en"))
    assert utc["datasets"]["series"][0]["bucket"] == "2026-12-02T10:00:00Z"
    assert utc["vconcat"][0]["layer"][1]["encoding"]["x"]["title"] == "Time (UTC)"


def test_an_age_is_said_in_the_past_even_for_a_time_stamped_ahead_of_the_clock():
    now = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)
    assert Translator("fr").age(now.replace(minute=1), now) == "il y a 1 seconde"
    assert Translator("en").age(now.replace(hour=14, minute=57), now) == "3 minutes ago"


def test_an_unknown_time_zone_is_refused_with_the_setting_named(monkeypatch):
    monkeypatch.setenv("KIDJAMO_CARE_TIMEZONE", "Africa/Yaounde-Centre")
    with pytest.raises(ValueError, match="KIDJAMO_CARE_TIMEZONE 'Africa/Yaounde-Centre' is not an IANA time zone"):
        Settings()
    monkeypatch.setenv("KIDJAMO_CARE_TIMEZONE", "Africa/Douala")
    assert Settings().care_timezone == "Africa/Douala"
