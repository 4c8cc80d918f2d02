"""French and English for the care-team screen: messages, dates, numbers and units.

The language comes from the switch (a cookie), else the browser's ``Accept-Language``, else French
(the care teams are largely francophone). Dates and numbers are formatted by Babel with the
locale's conventions (``37,2 °C`` and ``2 déc. 2026, 15:04`` in French).
"""

from __future__ import annotations

from datetime import datetime, timezone

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_timedelta
from babel.numbers import get_decimal_symbol, get_group_symbol
from markupsafe import Markup

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"

MESSAGES: dict[str, dict[str, str]] = {
    "app_title": {"en": "Kidjamo care team", "fr": "Kidjamo équipe soignante"},
    "ward_board": {"en": "Ward board", "fr": "Tableau du service"},
    "alert_queue": {"en": "Alert queue", "fr": "File des alertes"},
    "log_in": {"en": "Log in", "fr": "Se connecter"},
    "log_out": {"en": "Log out", "fr": "Se déconnecter"},
    "login": {"en": "Login", "fr": "Identifiant"},
    "password": {"en": "Password", "fr": "Mot de passe"},
    "bad_login": {"en": "Unknown login or wrong password.", "fr": "Identifiant inconnu ou mot de passe erroné."},
    "too_many_attempts": {"en": "Too many failed attempts: wait 15 minutes or ask an administrator.",
                          "fr": "Trop d'essais manqués : attendez 15 minutes ou appelez un administrateur."},
    "signed_in_as": {"en": "Signed in as", "fr": "Connecté(e) :"},
    "care_teams": {"en": "Care teams", "fr": "Équipes soignantes"},
    "patient": {"en": "Patient", "fr": "Patient"},
    "patients": {"en": "patients", "fr": "patients"},
    "age": {"en": "Age", "fr": "Âge"},
    "years": {"en": "y", "fr": "ans"},
    "genotype": {"en": "Genotype", "fr": "Génotype"},
    "open_alerts": {"en": "Open alerts", "fr": "Alertes ouvertes"},
    "no_open_alert": {"en": "no open alert", "fr": "aucune alerte ouverte"},
    "score": {"en": "Early-warning score", "fr": "Score d'alerte précoce"},
    "last_reading": {"en": "Last reading", "fr": "Dernière mesure"},
    "battery": {"en": "Battery", "fr": "Batterie"},
    "battery_low": {"en": "battery low", "fr": "batterie faible"},
    "silent": {"en": "Silent sensor", "fr": "Capteur muet"},
    "no_reading": {"en": "no reading", "fr": "aucune mesure"},
    "ago": {"en": "ago", "fr": "il y a"},
    "minutes_short": {"en": "min", "fr": "min"},
    "rising": {"en": "rising", "fr": "en hausse"},
    "falling": {"en": "falling", "fr": "en baisse"},
    "steady": {"en": "steady", "fr": "stable"},
    "spo2": {"en": "SpO2", "fr": "SpO2"},
    "heart_rate": {"en": "Heart rate", "fr": "Fréquence cardiaque"},
    "temperature": {"en": "Temperature", "fr": "Température"},
    "respiratory_rate": {"en": "Respiratory rate", "fr": "Fréquence respiratoire"},
    "hydration_pct": {"en": "Hydration", "fr": "Hydratation"},
    "pain_scale": {"en": "Pain", "fr": "Douleur"},
    "severity_critical": {"en": "Critical", "fr": "Critique"},
    "severity_high": {"en": "High", "fr": "Élevée"},
    "severity_warning": {"en": "Warning", "fr": "Attention"},
    "severity_info": {"en": "Info", "fr": "Info"},
    "status_open": {"en": "open", "fr": "ouverte"},
    "status_acknowledged": {"en": "acknowledged", "fr": "prise en compte"},
    "status_resolved": {"en": "resolved", "fr": "résolue"},
    "rule": {"en": "Rule", "fr": "Règle"},
    "severity": {"en": "Severity", "fr": "Gravité"},
    "evidence": {"en": "Evidence", "fr": "Éléments"},
    "opened": {"en": "Opened", "fr": "Ouverte"},
    "status": {"en": "Status", "fr": "Statut"},
    "acknowledge": {"en": "Acknowledge", "fr": "Prendre en compte"},
    "resolve": {"en": "Resolve", "fr": "Résoudre"},
    "escalate": {"en": "Escalate", "fr": "Escalader"},
    "reason": {"en": "Reason", "fr": "Motif"},
    "reason_required": {"en": "a resolution needs its reason.", "fr": "une résolution demande son motif."},
    "note": {"en": "Note (optional)", "fr": "Note (facultative)"},
    "acknowledged_by": {"en": "acknowledged by", "fr": "prise en compte par"},
    "no_alerts": {"en": "No open alert for your care teams.", "fr": "Aucune alerte ouverte pour vos équipes."},
    "no_patients": {"en": "No patient in your care teams.", "fr": "Aucun patient dans vos équipes."},
    "window": {"en": "Period", "fr": "Période"},
    "window_6h": {"en": "6 hours", "fr": "6 heures"},
    "window_24h": {"en": "24 hours", "fr": "24 heures"},
    "window_7d": {"en": "7 days", "fr": "7 jours"},
    "thresholds_note": {"en": "Dashed lines: this patient's alert thresholds (age band, genotype baseline).",
                        "fr": "Traits pointillés : seuils d'alerte de ce patient (tranche d'âge, valeur de base du génotype)."},
    "gaps": {"en": "Gaps (no reading)", "fr": "Trous (aucune mesure)"},
    "quarantined": {"en": "Quarantined readings", "fr": "Mesures mises en quarantaine"},
    "none": {"en": "none", "fr": "aucune"},
    "quarantine_reason": {"en": "Reason", "fr": "Motif"},
    "count": {"en": "Count", "fr": "Nombre"},
    "alerts_of_patient": {"en": "Alerts in this period", "fr": "Alertes sur la période"},
    "not_found_title": {"en": "Not available", "fr": "Non disponible"},
    "not_found": {"en": "No such patient or alert in your care teams.",
                  "fr": "Aucun patient ni alerte de ce numéro dans vos équipes."},
    "refused_title": {"en": "Refused", "fr": "Refusé"},
    "bad_form": {"en": "This form is out of date or was not sent by this page: nothing was changed. Reload the page and try again.",
                 "fr": "Ce formulaire est périmé ou ne vient pas de cette page : rien n'a été modifié. Rechargez la page et recommencez."},
    "action_refused": {"en": "Nothing was changed:", "fr": "Rien n'a été modifié :"},
    "done_acknowledged": {"en": "Alert {alert_id} acknowledged.", "fr": "Alerte {alert_id} prise en compte."},
    "done_resolved": {"en": "Alert {alert_id} resolved.", "fr": "Alerte {alert_id} résolue."},
    "done_escalated": {"en": "Alert {alert_id} escalated.", "fr": "Alerte {alert_id} escaladée."},
    "new_critical": {"en": "New critical alert", "fr": "Nouvelle alerte critique"},
    "updated_at": {"en": "Updated", "fr": "Mis à jour"},
    "back_to_board": {"en": "Back to the ward board", "fr": "Retour au tableau du service"},
    "language": {"en": "Language", "fr": "Langue"},
    "charts_need_js": {"en": "Charts need JavaScript; the latest values are in the table below.",
                       "fr": "Les courbes demandent JavaScript ; les dernières valeurs sont dans le tableau ci-dessous."},
    "latest_values": {"en": "Latest values", "fr": "Dernières valeurs"},
    "threshold": {"en": "threshold", "fr": "seuil"},
    "time": {"en": "Time", "fr": "Heure"},
}

UNITS = {"spo2": "%", "heart_rate": "bpm", "temperature": "°C", "respiratory_rate": "/min", "hydration_pct": "%",
         "pain_scale": "/10"}
UNITS_FR = {"heart_rate": "bpm", "respiratory_rate": "/min"}
DECIMALS = {"spo2": 0, "heart_rate": 0, "temperature": 1, "respiratory_rate": 0, "hydration_pct": 0, "pain_scale": 0}
# Characters of common text fonts (no emoji font needed on a ward PC).
SEVERITY_ICONS = {"critical": "‼", "high": "▲", "warning": "●", "info": "ℹ"}


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
    """Messages and formats of one language, handed to the templates as ``t``."""

    def __init__(self, language: str):
        try:
            self.locale = Locale.parse(language)
        except (ValueError, UnknownLocaleError):
            self.locale = Locale.parse(DEFAULT_LANGUAGE)
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        # Babel's symbols, applied to Python's formatting: a board formats ~2,000 numbers.
        self._decimal = get_decimal_symbol(self.locale)
        self._group = get_group_symbol(self.locale)

    @property
    def messages(self) -> dict[str, str]:
        """Every message in this language (templates read it once before a long loop)."""
        return {key: texts[self.language] for key, texts in MESSAGES.items()}

    def trend_arrows(self) -> dict[str | None, Markup]:
        """The HTML of each trend, by name (``None``: no trend)."""
        return {None: Markup("")} | {
            name: Markup('<span class="trend" title="{0}" aria-label="{0}">{1}</span>').format(self(name), arrow)
            for name, arrow in (("rising", "↑"), ("falling", "↓"), ("steady", "→"))}

    def __call__(self, key: str, **values) -> str:
        message = MESSAGES[key][self.language]
        return message.format(**values) if values else message

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

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        return format_datetime(value, format="medium", locale=self.locale, tzinfo=timezone.utc) + " UTC"

    def age(self, value: datetime | None, now: datetime) -> str:
        """How long ago, in words of the locale (``il y a 3 minutes``)."""
        if value is None:
            return self("no_reading")
        # A pipeline step stamps its rows with the end of its interval, up to a minute ahead of the clock.
        return format_timedelta(min(value, now) - now, add_direction=True, locale=self.locale, threshold=1.1)

    def percent(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{self.number(value)}{'%' if self.language == 'en' else chr(0x202f) + '%'}"

    def severity(self, severity: str) -> str:
        return f"{SEVERITY_ICONS[severity]} {self('severity_' + severity)}"
