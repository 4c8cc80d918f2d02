"""The care team's screen in a real headless Chromium (Debian's), driven by Playwright.

A clinician of team A logs in; a minute with a hypoxia reading runs through the real pipeline; the
critical alert appears on the open ward board without a reload; the clinician acknowledges it in
the alert queue, and ``kidjamo alerts show`` and the database agree. A clinician of team B sees
neither the patient nor the alert, also by direct URL. Screenshots of each page at 390 px and
1,280 px, in French and English, go to ``test-artifacts/care/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from care.app import create_app
from tests.care.conftest import ARTIFACTS, PASSWORD, Served, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NEW_ALERT_WITHIN_MS = 15_000
WIDTHS = {"phone": 390, "desk": 1280}


@pytest.fixture(scope="module")
def secure_app(ward):
    """The app with Secure cookies, as deployed: Chromium keeps them on http://127.0.0.1 (a secure context)."""
    settings = ward.settings.model_copy(update={"care_cookie_secure": True, "care_refresh_seconds": 2.0})
    served = Served(create_app(ward.app_url, settings), free_port()).start()
    yield served
    served.stop()


def open_session(browser, base_url: str, login: str, *, language: str = "fr", width: int = 1280):
    context = browser.new_context(viewport={"width": width, "height": 900}, locale=language,
                                  extra_http_headers={"Accept-Language": language})
    page = context.new_page()
    page.goto(f"{base_url}/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/board")
    return context, page


def kidjamo_cli(ward, *args: str) -> str:
    environment = {**os.environ, "KIDJAMO_DATABASE_URL": ward.url, "KIDJAMO_HOME": str(ward.settings.home),
                   "KIDJAMO_PSEUDONYM_KEY": ward.settings.pseudonym_key}
    result = subprocess.run([str(Path(sys.executable).parent / "kidjamo"), *args], env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_new_critical_alert_appears_without_reload_and_is_acknowledged_in_the_page(ward, secure_app, browser):
    hypoxic = ward.fleet.patient_ids[0]
    assert not ward.query("SELECT 1 FROM kidjamo.alerts WHERE patient_id = %s AND severity = 'critical'", (hypoxic,))
    context, page = open_session(browser, secure_app.base_url, "care_alice")
    session_cookie = next(c for c in context.cookies() if c["name"] == "kidjamo_care_session")
    assert session_cookie["secure"] and session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    page.evaluate("window.__sameDocument = true")

    ward.run_minute(hypoxia=True)
    (alert_id,) = ward.query("SELECT alert_id FROM kidjamo.alerts WHERE patient_id = %s AND severity = 'critical'"
                             " AND status = 'open' ORDER BY alert_id LIMIT 1", (hypoxic,))[0]
    page.wait_for_selector(f'tr[data-patient="{hypoxic}"][data-critical-alerts~="{alert_id}"]', timeout=NEW_ALERT_WITHIN_MS)
    assert page.evaluate("window.__sameDocument") is True  # refreshed in place, not reloaded
    assert "Nouvelle alerte critique" in page.inner_text("#announce")
    assert page.locator("tbody#board-rows tr").first.get_attribute("data-patient") == hypoxic
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "new-critical-alert-fr-desk.png"), full_page=True)

    page.click(f'a.alert-link[data-alert="{alert_id}"]')
    page.wait_for_selector(f"#alert-{alert_id}")
    page.click(f'#alert-{alert_id} button[data-action="acknowledge"]')
    page.wait_for_selector("p.done")
    assert page.get_attribute(f"#alert-{alert_id}", "data-status") == "acknowledged"

    shown = json.loads(kidjamo_cli(ward, "alerts", "show", str(alert_id)))
    assert (shown["status"], shown["acknowledged_by"]) == ("acknowledged", "care_alice")
    assert [e["actor"] for e in shown["events"] if e["event_type"] == "acknowledged"] == ["care_alice"]
    assert ward.query("SELECT status, acknowledged_by FROM kidjamo.alerts WHERE alert_id = %s", (alert_id,)) == [
        ("acknowledged", "care_alice")]
    context.close()


def test_a_clinician_of_team_b_sees_neither_the_patient_nor_the_alert_even_by_url(ward, secure_app, browser):
    hypoxic = ward.fleet.patient_ids[0]
    alert_ids = [row[0] for row in ward.query("SELECT alert_id FROM kidjamo.alerts WHERE patient_id = %s", (hypoxic,))]
    context, page = open_session(browser, secure_app.base_url, "care_bob", language="en")
    assert hypoxic not in page.content()
    assert page.locator("tbody#board-rows tr[data-patient]").count() == len(ward.team_b)
    response = page.goto(f"{secure_app.base_url}/patients/{hypoxic}")
    assert response.status == 404
    assert "No such patient or alert in your care teams" in page.inner_text("main")
    page.goto(f"{secure_app.base_url}/alerts")
    for alert_id in alert_ids:
        assert page.locator(f"#alert-{alert_id}").count() == 0
    context.close()


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("device", list(WIDTHS))
def test_every_page_fits_the_width_and_draws_its_charts(ward, secure_app, browser, language, device):
    width = WIDTHS[device]
    context, page = open_session(browser, secure_app.base_url, "care_alice", language=language, width=width)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    patient = ward.fleet.patient_ids[0]
    for name, path in [("board", "/board"), ("patient", f"/patients/{patient}?window=6h"), ("alerts", "/alerts")]:
        page.goto(f"{secure_app.base_url}{path}")
        if name == "patient":
            page.wait_for_selector("#charts[data-drawn=true] svg", timeout=30_000)
            assert page.get_attribute("#charts", "data-error") is None
        page.screenshot(path=str(ARTIFACTS / f"{name}-{language}-{device}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than a {width}px screen"
    context.close()
