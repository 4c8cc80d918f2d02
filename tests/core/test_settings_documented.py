"""Every configuration variable is documented for the people who set it."""

from pathlib import Path

from kidjamo.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_the_readme_or_docs():
    text = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [
        f"KIDJAMO_{name.upper()}" for name in Settings.model_fields
        if f"KIDJAMO_{name.upper()}" not in text and not (name.startswith("ingest_") and "KIDJAMO_INGEST_" in text)
    ]
    assert missing == []
