"""Load and validate the clinical rule set (``rules.yaml``), the versioned data behind every alert.

A malformed file fails loudly at load time with the rule id and the field at fault, e.g.
``rules.yaml: rule 'fever' field 'thresholds.temperature_at_least': Field required``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RULES_PATH = Path(__file__).resolve().parent / "rules.yaml"

Severity = Literal["info", "warning", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "high": 2, "critical": 3}


class RuleFileError(ValueError):
    """The rule file is malformed; the message names the file, the rule and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bound(_Strict):
    """One side of a PEWS band: ``value op bound`` (e.g. heart rate >= 190)."""

    op: Literal[">", ">=", "<", "<="]
    value: float


class VitalBand(_Strict):
    """A vital's Bedside PEWS item for one age band (Parshuram 2009, Table 1).

    Sub-score 0 strictly inside ``normal`` (exclusive edges), 1 outside it, 2 in the intermediate
    band, 4 in the extreme band.
    """

    normal: tuple[float, float]
    intermediate_high: Bound
    intermediate_low: Bound
    extreme_high: Bound
    extreme_low: Bound

    @model_validator(mode="after")
    def _ordered(self) -> "VitalBand":
        low, high = self.normal
        if not (self.extreme_low.value <= self.intermediate_low.value <= low < high
                <= self.intermediate_high.value <= self.extreme_high.value):
            raise ValueError("expected extreme_low <= intermediate_low <= normal low < normal high"
                             f" <= intermediate_high <= extreme_high, got {self}")
        return self


class AgeBand(_Strict):
    id: str
    min_years: float = Field(ge=0)
    max_years: float
    heart_rate: VitalBand
    respiratory_rate: VitalBand
    typical_heart_rate: float = Field(gt=0)


class Baselines(_Strict):
    window_days: int = Field(gt=0)
    min_hours_of_data: float = Field(gt=0)
    genotype_spo2_default: dict[str, float]
    typical_temperature: float
    typical_hydration: float = Field(gt=0, le=100)


class Escalation(_Strict):
    escalation_channel_minutes: float = Field(gt=0)
    second_tier_minutes: float = Field(gt=0)
    high_escalation_channel_minutes: float = Field(gt=0)
    high_second_tier_minutes: float = Field(gt=0)
    acknowledged_renotify_minutes: float = Field(gt=0)

    def tiers(self, severity: str) -> list[tuple[int, str, float]]:
        """(tier, audience, minutes unacknowledged) of the escalation schedule of a severity (none below high)."""
        minutes = {"critical": (self.escalation_channel_minutes, self.second_tier_minutes),
                   "high": (self.high_escalation_channel_minutes, self.high_second_tier_minutes)}.get(severity)
        return [] if minutes is None else [(1, "escalation", minutes[0]), (2, "second_tier", minutes[1])]


# Thresholds of each rule: a rule id without a model here is an unknown rule.
class FeverThresholds(_Strict):
    temperature_at_least: float


class FeverInfantThresholds(_Strict):
    age_below_years: float
    temperature_at_least: float


class FeverOnsetThresholds(_Strict):
    temperature_at_least: float
    temperature_below: float
    age_at_least_years: float


class HypothermiaThresholds(_Strict):
    temperature_at_most: float
    infant_age_below_years: float
    infant_temperature_below: float


class SpO2AtMost(_Strict):
    spo2_at_most: float


class SpO2Below(_Strict):
    spo2_below: float


class SpO2DropThresholds(_Strict):
    spo2_below: float
    drop_at_least: float


class AcsThresholds(_Strict):
    temperature_at_least: float
    pain_at_least: int


class AgeBandThresholds(_Strict):
    extreme_severity: Severity


class WhoFastBreathing(_Strict):
    """WHO/IMCI fast breathing: a rate at or above ``at_least`` for ages in [min_months, max_months)."""

    min_months: float = Field(ge=0)
    max_months: float
    at_least: float


class TachypnoeaThresholds(_Strict):
    extreme_severity: Severity
    who_fast_breathing: list[WhoFastBreathing]
    adults_from_years: float
    adult_above: float
    adult_extreme_above: float


class BradypnoeaThresholds(_Strict):
    extreme_severity: Severity
    adults_from_years: float
    adult_below: float
    adult_extreme_below: float


class PainSevereThresholds(_Strict):
    pain_at_least: int
    readings_at_least: int = Field(ge=1)
    window_minutes: float = Field(gt=0)
    single_reading_at_least: int


class VocThresholds(_Strict):
    pain_at_least: int
    temperature_at_least: float
    spo2_at_most: float


class News2Thresholds(_Strict):
    age_at_least_years: float
    critical_at_least: int
    high_at_least: int
    single_parameter_at_least: int
    critical_severity: Severity


class DehydrationThresholds(_Strict):
    drop_at_least: float
    hydration_below: float


class HeatDehydrationThresholds(_Strict):
    ambient_at_least: float
    activity_at_least: int


class HeatExposureThresholds(_Strict):
    heat_index_at_least: float
    high_at_least: float
    high_severity: Severity


class ColdThresholds(_Strict):
    ambient_at_most: float


class FlatlineThresholds(_Strict):
    minutes: float = Field(gt=0)
    vitals: list[Literal["spo2", "heart_rate", "temperature", "respiratory_rate"]]


class ImplausibleThresholds(_Strict):
    vitals: list[Literal["spo2", "heart_rate", "temperature", "respiratory_rate"]]


class BatteryThresholds(_Strict):
    battery_below: float


class SilentThresholds(_Strict):
    silent_minutes: float = Field(gt=0)
    lookback_hours: float = Field(gt=0)
    open_alert_at_least: Severity
    with_open_alert_severity: Severity


THRESHOLD_MODELS: dict[str, type[BaseModel]] = {
    "fever": FeverThresholds,
    "fever_infant": FeverInfantThresholds,
    "fever_onset": FeverOnsetThresholds,
    "hypothermia": HypothermiaThresholds,
    "hypoxia": SpO2AtMost,
    "hypoxia_severe": SpO2Below,
    "hypoxia_emergency": SpO2Below,
    "spo2_drop": SpO2DropThresholds,
    "acs_pattern": AcsThresholds,
    "tachypnoea": TachypnoeaThresholds,
    "bradypnoea": BradypnoeaThresholds,
    "heart_rate": AgeBandThresholds,
    "pain_severe": PainSevereThresholds,
    "voc_pattern": VocThresholds,
    "news2": News2Thresholds,
    "dehydration": DehydrationThresholds,
    "heat_dehydration": HeatDehydrationThresholds,
    "heat_exposure": HeatExposureThresholds,
    "cold_exposure": ColdThresholds,
    "implausible_vital": ImplausibleThresholds,
    "sensor_flatline": FlatlineThresholds,
    "sensor_battery": BatteryThresholds,
    "sensor_silent": SilentThresholds,
}


ReadingParameter = Literal["spo2", "heart_rate", "temperature", "respiratory_rate", "pain_scale", "hydration_pct",
                           "activity_level", "ambient_temp", "ambient_humidity", "battery_level", "signal_quality"]


class Rule(_Strict):
    id: str
    version: int = Field(ge=1)
    title: str
    condition: str
    severity: Severity
    source: str
    project_choice: bool = False
    thresholds: BaseModel
    supersedes: list[str] = Field(default_factory=list)
    auto_resolve: bool = True
    resolve_on: list[ReadingParameter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _resolvable(self) -> "Rule":
        # sensor_silent resolves when its device reports again; every other rule names its parameters.
        if self.auto_resolve and not self.resolve_on and self.id != "sensor_silent":
            raise ValueError("expected resolve_on (the parameters whose normal reading resolves the alert)"
                             " or auto_resolve: false")
        return self

    @property
    def version_label(self) -> str:
        return f"{self.id}@v{self.version}"


class RuleSet(_Strict):
    ruleset_version: str
    age_bands: list[AgeBand]
    baselines: Baselines
    escalation: Escalation
    rules: dict[str, Rule]

    def band(self, band_id: str) -> AgeBand:
        return next(band for band in self.age_bands if band.id == band_id)

    def __getitem__(self, rule_id: str) -> Rule:
        return self.rules[rule_id]


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def parse_rules(document: object, *, source: str = "rules.yaml") -> RuleSet:
    """Validate a parsed rule document; raise :class:`RuleFileError` naming the rule and the field."""
    if not isinstance(document, dict):
        raise RuleFileError(f"{source}: expected a mapping at the top level, got {type(document).__name__}")
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleFileError(f"{source}: field 'rules': expected a non-empty list of rules")
    rules: dict[str, Rule] = {}
    for position, raw in enumerate(raw_rules):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        label = f"rule {rule_id!r}" if rule_id else f"rule #{position + 1}"
        if not isinstance(raw, dict) or not isinstance(rule_id, str):
            raise RuleFileError(f"{source}: {label} field 'id': expected a rule id string")
        if rule_id in rules:
            raise RuleFileError(f"{source}: {label} field 'id': duplicate rule id")
        model = THRESHOLD_MODELS.get(rule_id)
        if model is None:
            raise RuleFileError(f"{source}: {label} field 'id': unknown rule (known: {', '.join(THRESHOLD_MODELS)})")
        try:
            thresholds = model.model_validate(raw.get("thresholds"))
        except ValidationError as error:
            first = error.errors()[0]
            raise RuleFileError(
                f"{source}: {label} field 'thresholds.{_location(first['loc'])}': {first['msg']}"
            ) from None
        try:
            rules[rule_id] = Rule.model_validate({**raw, "thresholds": thresholds})
        except ValidationError as error:
            first = error.errors()[0]
            raise RuleFileError(f"{source}: {label} field '{_location(first['loc'])}': {first['msg']}") from None
    missing = set(THRESHOLD_MODELS) - set(rules)
    if missing:
        raise RuleFileError(f"{source}: field 'rules': missing rule(s) {', '.join(sorted(missing))}")
    for rule in rules.values():
        for other in rule.supersedes:
            if other not in rules:
                raise RuleFileError(f"{source}: rule {rule.id!r} field 'supersedes': unknown rule {other!r}")
    try:
        ruleset = RuleSet.model_validate({**document, "rules": rules})
    except ValidationError as error:
        first = error.errors()[0]
        raise RuleFileError(f"{source}: field '{_location(first['loc'])}': {first['msg']}") from None
    _check_bands(ruleset, source)
    return ruleset


def _check_bands(ruleset: RuleSet, source: str) -> None:
    bands = sorted(ruleset.age_bands, key=lambda band: band.min_years)
    if bands[0].min_years != 0:
        raise RuleFileError(f"{source}: age band {bands[0].id!r} field 'min_years': the first band must start at 0")
    for previous, band in zip(bands, bands[1:]):
        if band.min_years != previous.max_years:
            raise RuleFileError(
                f"{source}: age band {band.id!r} field 'min_years': expected {previous.max_years} "
                f"(the end of band {previous.id!r}), got {band.min_years}"
            )


def load_rules(path: Path | str | None = None) -> RuleSet:
    """Read and validate a rule file (default: the repository's ``rules.yaml``)."""
    path = Path(path) if path else RULES_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RuleFileError(f"{path}: not valid YAML: {error}") from None
    return parse_rules(document, source=str(path))


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The repository rule set, loaded and validated once per process."""
    return load_rules()


SEVERITY_WORDS = {"info": "info", "warning": "warning", "high": "high", "critical": "**critical**"}


def _threshold_text(rule: Rule) -> str:
    parts = []
    for name, value in rule.thresholds.model_dump().items():
        if isinstance(value, list):
            value = ", ".join(
                "(" + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in item.items()) + ")" if isinstance(item, dict)
                else str(item) for item in value)
        parts.append(f"{name.replace('_', ' ')} {value}")
    return "; ".join(parts)


def _resolution_text(rule: Rule) -> str:
    if not rule.auto_resolve:
        return "never (a clinician resolves it)"
    if not rule.resolve_on:
        return "when the device reports again"
    return "after a normal " + ", ".join(name.replace("_", " ") for name in rule.resolve_on) + " reading"


def rules_markdown(ruleset: RuleSet) -> str:
    """The rule set as Markdown tables (the generated part of docs/clinical-rules.md)."""
    lines = [f"Rule set version **{ruleset.ruleset_version}** (`transforms/clinical/rules.yaml`).", "",
             "| rule | version | condition | severity | thresholds (as configured) | resolves itself | source |",
             "|---|---|---|---|---|---|---|"]
    for rule in ruleset.rules.values():
        severity = SEVERITY_WORDS[rule.severity]
        extra = {k: v for k, v in rule.thresholds.model_dump().items() if k.endswith("severity")}
        if extra:
            severity += " (" + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items()) + ")"
        source = rule.source + (" — *project choice*" if rule.project_choice and "project choice" not in rule.source else "")
        lines.append(f"| `{rule.id}` | {rule.version} | {rule.condition} | {severity} | {_threshold_text(rule)} | "
                     f"{_resolution_text(rule)} | {source} |")
    lines += ["", "Age bands and Bedside PEWS item sub-scores (Parshuram 2009, Table 1), by age at the reading's "
              "time (a band includes its lower edge). Sub-score 0 strictly inside the normal range, 1 at or beyond "
              "its edges, 2 in the intermediate band, 4 in the extreme band:", "",
              "| band | ages | heart rate 0 | heart rate 2 | heart rate 4 | resp. rate 0 | resp. rate 2 | resp. rate 4 |",
              "|---|---|---|---|---|---|---|---|"]

    def either(high: Bound, low: Bound) -> str:
        return f"{high.op} {high.value:g} or {low.op} {low.value:g}"

    for band in ruleset.age_bands:
        upper = "" if band.max_years >= 150 else f"{band.max_years:g}"
        cells = []
        for vital in (band.heart_rate, band.respiratory_rate):
            cells += [f"> {vital.normal[0]:g} and < {vital.normal[1]:g}",
                      either(vital.intermediate_high, vital.intermediate_low), either(vital.extreme_high, vital.extreme_low)]
        lines.append(f"| `{band.id}` | {band.min_years:g}–{upper} y | " + " | ".join(cells) + " |")
    b, e = ruleset.baselines, ruleset.escalation
    defaults = ", ".join(f"{genotype} {value:g} %" for genotype, value in b.genotype_spo2_default.items())
    lines += ["", f"Baselines: median of the last {b.window_days} days of the patient's readings outside alert "
              f"episodes, when they cover at least {b.min_hours_of_data:g} h; else the registry SpO2; else the "
              f"genotype default ({defaults}). Without a personal baseline, heart rate uses the age band's typical "
              f"value, temperature {b.typical_temperature:g} °C and hydration {b.typical_hydration:g} %.",
              "", f"Escalation: a critical alert not acknowledged after {e.escalation_channel_minutes:g} minutes is "
              f"notified again on the escalation channel, after {e.second_tier_minutes:g} minutes to the second tier; "
              f"a high alert after {e.high_escalation_channel_minutes:g} and {e.high_second_tier_minutes:g} minutes. "
              f"An acknowledged alert whose rule still matches is notified again every "
              f"{e.acknowledged_renotify_minutes:g} minutes. No alert resolves itself while it is critical and "
              f"unacknowledged, nor in the run that opened it, nor before the quiet period "
              f"(`KIDJAMO_ALERT_QUIET_MINUTES`) after its last matching reading; its resolution is notified."]
    return "\n".join(lines) + "\n"


GENERATED_START = "(do not edit by hand; edit rules.yaml) -->\n"
GENERATED_END = "<!-- end generated -->"


def write_rules_page(path: Path | str, ruleset: RuleSet) -> None:
    """Replace the generated section of a Markdown page (docs/clinical-rules.md) with :func:`rules_markdown` of ``ruleset``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    head, start, rest = text.partition(GENERATED_START)
    _, end, tail = rest.partition(GENERATED_END)
    if not start or not end:
        raise RuleFileError(f"{path}: expected the generated-section markers {GENERATED_START.strip()!r} and {GENERATED_END!r}")
    path.write_text(head + GENERATED_START + rules_markdown(ruleset) + GENERATED_END + tail, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        write_rules_page(sys.argv[1], default_rules())
    else:
        print(rules_markdown(default_rules()), end="")
