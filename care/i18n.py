"""French and English for the care-team screen: messages, dates, times, numbers and units.

The language comes from the switch (a cookie), else the browser's ``Accept-Language``, else French
(the care teams are largely francophone). Every text lives in one Babel message catalogue per
language, ``care/locale/<language>/LC_MESSAGES/care.po``: the screen's own texts by id, and the
French of texts written in English elsewhere (rule titles and conditions from ``rules.yaml``, an
alert's qualifiers). Dates and numbers are formatted by Babel with the locale's conventions (``37,2 °C``
and ``2 déc. 2026, 16:04`` in French), times in the care team's time zone (``KIDJAMO_CARE_TIMEZONE``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_timedelta
from babel.messages.pofile import read_po
from babel.numbers import get_decimal_symbol, get_group_symbol
from markupsafe import Markup

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
SOURCE_LANGUAGE = "en"  # the language of rules.yaml and of the alert evaluation's qualifiers
CATALOGUE_DIR = Path(__file__).resolve().parent / "locale"
RULE_TITLE = "rule title"  # msgctxt of the rule titles
RULE_CONDITION = "rule condition"  # msgctxt of the rule conditions
QUALIFIER = "qualifier"  # msgctxt of the qualifiers

UNITS = {"spo2": "%", "heart_rate": "bpm", "temperature": "°C", "respiratory_rate": "/min", "hydration_pct": "%",
         "pain_scale": "/10"}
DECIMALS = {"spo2": 0, "heart_rate": 0, "temperature": 1, "respiratory_rate": 0, "hydration_pct": 0, "pain_scale": 0}
# Characters of common text fonts (no emoji font needed on a ward PC).
SEVERITY_ICONS = {"critical": "‼", "high": "▲", "warning": "●", "info": "ℹ"}


@lru_cache(maxsize=None)
def catalogue(language: str) -> dict[tuple[str | None, str], str]:
    """The translated messages of ``language`` by (context, id); fuzzy or empty translations are left out."""
    with open(CATALOGUE_DIR / language / "LC_MESSAGES" / "care.po", "rb") as file:
        messages = read_po(file, locale=language, domain="care")
    return {(message.context, message.id): message.string for message in messages
            if message.id and message.string and not message.fuzzy}


@lru_cache(maxsize=None)
def _qualifier_patterns() -> list[tuple[re.Pattern, str]]:
    """Each qualifier's English text as a pattern (``{name}`` matches a number), with its id."""
    ids = {message_id for language in LANGUAGES for context, message_id in catalogue(language) if context == QUALIFIER}
    patterns = []
    for message_id in sorted(ids, key=len, reverse=True):
        parts = re.split(r"\{(\w+)\}", message_id)
        pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>-?[0-9.]+)" for i, part in enumerate(parts))
        patterns.append((re.compile(pattern + "$"), message_id))
    return patterns


def negotiate(accept_language: str | None, chosen: str | None = None) -> str:
    """The language to answer in: the switch's choice, else the browser's first supported one, else French."""
    if chosen in LANGUAGES:
        return chosen
    preferred = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag:
            preferred.append((weight, tag.replace("_", "-")))
    tags = [tag for weight, tag in sorted(preferred, key=lambda p: -p[0]) if weight > 0]
    match = Locale.negotiate(tags, list(LANGUAGES), sep="-") if tags else None
    return str(match) if match else DEFAULT_LANGUAGE


class Translator:
    """Messages and formats of one language and time zone, handed to the templates as ``t``."""

    def __init__(self, language: str, zone: str = "UTC"):
        try:
            self.locale = Locale.parse(language)
        except (ValueError, UnknownLocaleError):
            self.locale = Locale.parse(DEFAULT_LANGUAGE)
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self.zone = ZoneInfo(zone)
        self._messages = catalogue(self.language)
        # Babel's symbols, applied to Python's formatting: a board formats ~2,000 numbers.
        self._decimal = get_decimal_symbol(self.locale)
        self._group = get_group_symbol(self.locale)

    @property
    def messages(self) -> dict[str, str]:
        """Every screen message in this language by id (templates read it once before a long loop)."""
        return {key: text for (context, key), text in self._messages.items() if context is None}

    def trend_arrows(self) -> dict[str | None, Markup]:
        """The HTML of each trend, by name (``None``: no trend)."""
        return {None: Markup("")} | {
            name: Markup('<span class="trend" title="{0}" aria-label="{0}">{1}</span>').format(self(name), arrow)
            for name, arrow in (("rising", "↑"), ("falling", "↓"), ("steady", "→"))}

    def __call__(self, key: str, **values) -> str:
        message = self._messages[(None, key)]
        return message.format(**values) if values else message

    def rule_title(self, title: str | None, rule_id: str) -> str:
        """A rule's title (its English title from rules.yaml) in this language; the rule id when it has none."""
        if not title:
            return rule_id
        return title if self.language == SOURCE_LANGUAGE else self._messages.get((RULE_TITLE, title), title)

    def rule_condition(self, condition: str | None) -> str:
        """A rule's condition (English, from rules.yaml) in this language; as written if it has no translation."""
        if not condition or self.language == SOURCE_LANGUAGE:
            return condition or ""
        return self._messages.get((RULE_CONDITION, condition), condition)

    def qualifier(self, text: str) -> str:
        """An alert's qualifier (written in English by the alert evaluation) in this language; as written if unknown."""
        if self.language == SOURCE_LANGUAGE:
            return text
        for pattern, message_id in _qualifier_patterns():
            match = pattern.match(text)
            if match and (QUALIFIER, message_id) in self._messages:
                values = {name: self.number(float(value), decimals=0 if float(value).is_integer() else 1)
                          for name, value in match.groupdict().items()}
                return self._messages[(QUALIFIER, message_id)].format(**values)
        return text

    def number(self, value: float | None, decimals: int = 0) -> str:
        if value is None:
            return "–"
        text = f"{value:,.{decimals}f}"
        return text.replace(",", "\0").replace(".", self._decimal).replace("\0", self._group)

    def vital(self, name: str, value: float | None) -> str:
        """A vital with its unit, in the locale's number format (``37,2 °C``)."""
        if value is None:
            return "–"
        unit = UNITS[name]
        spacer = "" if unit.startswith("/") or (unit == "%" and self.language == "en") else "\u202f"
        return f"{self.number(value, DECIMALS[name])}{spacer}{unit}"

    @property
    def zone_name(self) -> str:
        """The time zone's IANA name, as the pages and chart axes name it (``Africa/Douala``)."""
        return self.zone.key

    def zone_label(self, at: datetime | None = None) -> str:
        """The zone's name with its offset at ``at`` (default now): ``Africa/Douala (UTC+01:00)``, or ``UTC``."""
        if self.zone.key == "UTC":
            return "UTC"
        offset = (at or datetime.now(timezone.utc)).astimezone(self.zone).strftime("%z")
        return f"{self.zone.key} (UTC{offset[:3]}:{offset[3:]})"

    def local(self, value: datetime) -> datetime:
        """``value`` (UTC) as the care team's wall-clock time."""
        return value.astimezone(self.zone)

    def datetime(self, value: datetime | str | None) -> str:
        """A date and time in the care team's zone, in the locale's format (``2 déc. 2026, 16:04:05 WAT``)."""
        if value is None:
            return "–"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        local = value.astimezone(self.zone)
        return f"{format_datetime(local, format='medium', locale=self.locale, tzinfo=self.zone)} {local.strftime('%Z')}"

    def age(self, value: datetime | None, now: datetime) -> str:
        """How long ago, in words of the locale (``il y a 3 minutes``)."""
        if value is None:
            return self("no_reading")
        # A pipeline step stamps its rows with the end of its interval, up to a minute ahead of the clock:
        # such a time reads "1 second ago", never "in 0 seconds".
        return format_timedelta(min(value - now, -timedelta(seconds=1)), add_direction=True, locale=self.locale,
                                threshold=1.1)

    def percent(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{self.number(value)}{'%' if self.language == 'en' else chr(0x202f) + '%'}"

    def severity(self, severity: str) -> str:
        return f"{SEVERITY_ICONS[severity]} {self('severity_' + severity)}"
