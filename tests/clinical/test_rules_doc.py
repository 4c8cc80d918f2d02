"""The clinician's page lists the rules exactly as the rule file configures them."""

from pathlib import Path

from transforms.clinical.rules import default_rules, rules_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "clinical-rules.md"


def test_the_rules_page_is_generated_from_the_current_rule_file():
    text = DOC.read_text()
    generated = text.split("(do not edit by hand; edit rules.yaml) -->\n", 1)[1].split("<!-- end generated -->", 1)[0]
    assert generated == rules_markdown(default_rules()), "run: python -m transforms.clinical.rules docs/clinical-rules.md"
