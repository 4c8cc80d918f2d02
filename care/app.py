"""The care team's screen: ward board, patient page and alert queue (``kidjamo care serve``).

Server-rendered pages (FastAPI + Jinja2), one small script that refreshes the board and the queue
in place, and Vega-Lite charts drawn by the vega-embed copy shipped in ``care/static/vendor`` (no
CDN: a clinic's network may have no internet). Every page and action runs as the clinician's
database role (see :mod:`care.auth`); alert actions call the same functions as ``kidjamo alerts``.
A clinician logs in with a password, or with the hospital's OpenID Connect provider when one is
configured (:mod:`care.oidc`); both open the same database-backed session.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from care import charts, queries
from care.auth import Clinician, Gatekeeper, LoginRefused, audit, csrf_matches, now_utc
from care.i18n import LANGUAGES, Translator, negotiate
from care.oidc import LOGIN_TTL, HospitalLogin, HospitalLoginRefused
from kidjamo.settings import Settings, get_settings
from transforms.alerts.actions import AlertActionError, acknowledge_alert, escalate_alert, resolve_alert
from transforms.clinical.rules import default_rules

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "kidjamo_care_session"
LOGIN_COOKIE = "kidjamo_care_login"
LANGUAGE_COOKIE = "kidjamo_care_lang"
#: Binds a hospital login to the browser that began it; SameSite=Lax, as the provider's redirect back is cross-site.
OIDC_COOKIE = "kidjamo_care_oidc"
OIDC_CALLBACK = "/login/oidc/callback"
ACTIONS = {"acknowledge": (acknowledge_alert, "done_acknowledged"), "resolve": (resolve_alert, "done_resolved"),
           "escalate": (escalate_alert, "done_escalated")}
DONE_KEYS = {done for _, done in ACTIONS.values()}


class NotLoggedIn(Exception):
    """A page or action asked for without a live session (answered by a redirect to the login page)."""
SECURITY_HEADERS = {
    # Everything is served from here: scripts, styles, charts (vega compiles expressions without eval).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_app(app_url: str, settings: Settings | None = None, *, clock=now_utc) -> FastAPI:
    """The care-team app, logging in to the warehouse with ``app_url``: the URL of ``kidjamo_authenticator``
    (``kidjamo.warehouse.database.component_url("care")``), never the owner's."""
    settings = settings or get_settings()
    gate = Gatekeeper(app_url, settings)
    hospital = HospitalLogin(settings, gate) if settings.care_oidc_enabled else None
    rules = default_rules()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="Kidjamo care team", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if not request.url.path.startswith("/static/"):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    def translator(request: Request) -> Translator:
        return Translator(negotiate(request.headers.get("accept-language"), request.cookies.get(LANGUAGE_COOKIE)),
                          settings.care_timezone)

    def page(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
        t = translator(request)
        return templates.TemplateResponse(request, name, {"t": t, "lang": t.language, "languages": LANGUAGES,
                                                          "refresh_ms": int(settings.care_refresh_seconds * 1000),
                                                          **context}, status_code=status_code)

    def current(request: Request) -> Clinician | None:
        return gate.session(request.cookies.get(SESSION_COOKIE), now=clock())

    def signed_in(request: Request) -> Clinician:
        """The clinician of the request's session (a dependency of every page and action)."""
        clinician = current(request)
        if clinician is None:
            raise NotLoggedIn()
        return clinician

    @app.exception_handler(NotLoggedIn)
    def to_login(request: Request, _: NotLoggedIn) -> Response:
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    def open_session(token: str, response: Response) -> Response:
        """``response`` carrying the new session's cookie (and no more login cookies)."""
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=settings.care_cookie_secure,
                            max_age=int(settings.care_session_minutes * 60))
        response.delete_cookie(LOGIN_COOKIE)
        response.delete_cookie(OIDC_COOKIE, path="/login/oidc")
        return response

    def login_page(request: Request, token: str, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
        return page(request, "login.html", {"clinician": None, "login_token": token, "error": error,
                                            "hospital_login": hospital is not None,
                                            "provider_name": settings.care_oidc_provider_name},
                    status_code=status_code)

    def refuse(request: Request, clinician: Clinician, *, status_code: int, message: str, action: str, detail: dict,
               patient_id: str | None = None) -> HTMLResponse:
        """A clear refusal page; the denial is audited as the clinician (nothing else happens)."""
        with gate.as_clinician(clinician) as connection:
            audit(connection, action, {"path": request.url.path, "status": status_code, **detail}, patient_id)
        t = translator(request)
        title = t("not_found_title") if status_code == 404 else t("refused_title")
        return page(request, "refused.html", {"clinician": clinician, "title": title, "message": message},
                    status_code=status_code)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/board", status_code=303)

    @app.get("/language/{language}")
    def switch_language(language: str, request: Request, back: str = "/board") -> Response:
        response = RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/board",
                                    status_code=303)
        if language in LANGUAGES:
            response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400, httponly=True, samesite="lax",
                                secure=settings.care_cookie_secure)
        return response

    @app.get("/login")
    def login_form(request: Request) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = login_page(request, token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=settings.care_cookie_secure)
        return response

    @app.post("/login")
    def login(request: Request, login: str = Form(""), password: str = Form(""), csrf_token: str = Form("")) -> Response:
        t = translator(request)
        client = request.client.host if request.client else None
        expected = request.cookies.get(LOGIN_COOKIE)
        if not expected or not csrf_matches(expected, csrf_token):
            with gate.authenticator() as connection:
                audit(connection, "care_login_refused", {"login": login[:63], "client": client, "reason": "bad_form"})
            return login_page(request, expected or "", error=t("bad_form"), status_code=403)
        try:
            token, _ = gate.log_in(login, password, client=client, now=clock())
        except LoginRefused as refused:
            status = 429 if refused.reason == "too_many_attempts" else 401
            return login_page(request, expected, error=t(refused.reason), status_code=status)
        return open_session(token, RedirectResponse("/board", status_code=303))

    @app.get("/login/oidc")
    def hospital_login_start(request: Request) -> Response:
        """Send the browser to the hospital's provider (the login page's link).

        A link, not a form: the page's CSP (form-action 'self') would stop a form's redirect to the
        provider. Beginning a login changes nothing; the callback checks it came back to this browser.
        """
        t = translator(request)
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        if hospital is None:
            return login_page(request, token, error=t("not_found"), status_code=404)
        browser = secrets.token_urlsafe(32)
        try:
            url = hospital.start(browser, str(request.url_for("hospital_login_callback")), now=clock())
        except HospitalLoginRefused:
            return login_page(request, token, error=t("oidc_unavailable"), status_code=503)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(OIDC_COOKIE, browser, httponly=True, samesite="lax", secure=settings.care_cookie_secure,
                            max_age=int(LOGIN_TTL.total_seconds()), path="/login/oidc")
        return response

    @app.get(OIDC_CALLBACK)
    def hospital_login_callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
        """The provider's redirect back: a session for a provisioned clinician, else a refusal (audited)."""
        t = translator(request)
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        if hospital is None:
            return login_page(request, token, error=t("not_found"), status_code=404)
        try:
            session, _ = hospital.finish(request.cookies.get(OIDC_COOKIE), state=state[:200], code=code[:2000],
                                         error=error, client=request.client.host if request.client else None,
                                         now=clock())
        except HospitalLoginRefused as refused:
            message = t("oidc_unknown_identity") if refused.reason == "unknown_identity" else t("oidc_refused")
            response = login_page(request, token, error=message, status_code=403)
            response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=settings.care_cookie_secure)
            response.delete_cookie(OIDC_COOKIE, path="/login/oidc")
            return response
        # A page, not a redirect: the provider's cross-site redirect would keep the SameSite=Strict session
        # cookie off the next request; a navigation this page starts is same-site.
        return open_session(session, page(request, "signed_in.html", {"clinician": None}))

    @app.post("/logout")
    def logout(request: Request, csrf_token: str = Form(""), clinician: Clinician = Depends(signed_in)) -> Response:
        if not csrf_matches(clinician.csrf_token, csrf_token):
            return refuse(request, clinician, status_code=403, message=translator(request)("bad_form"),
                          action="care_form_refused", detail={"reason": "bad_csrf"})
        gate.log_out(clinician)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    def board_context(clinician: Clinician) -> dict:
        now = clock()
        with gate.as_clinician(clinician) as connection:
            patients = queries.ward_board(connection, now=now, silent_minutes=rules["sensor_silent"].thresholds.silent_minutes,
                                          rules=rules)
            teams = [row[0] for row in connection.execute("SELECT kidjamo.care_teams_of(current_user) ORDER BY 1")]
        return {"clinician": clinician, "patients": patients, "now": now, "teams": teams}

    @app.get("/board")
    def board(request: Request, clinician: Clinician = Depends(signed_in)) -> Response:
        return page(request, "board.html", board_context(clinician))

    @app.get("/board/rows")
    def board_rows(request: Request, clinician: Clinician = Depends(signed_in)) -> Response:
        """The board's rows alone, for the in-place refresh."""
        return page(request, "_board_rows.html", board_context(clinician))

    @app.get("/patients/{patient_id}")
    def patient_page(patient_id: str, request: Request, window: str = "24h", clinician: Clinician = Depends(signed_in)) -> Response:
        period = queries.WINDOWS.get(window, queries.WINDOWS["24h"])
        t = translator(request)
        now = clock()
        start, end = queries.window_bounds(period, now)
        with gate.as_clinician(clinician) as connection:
            patient = queries.patient(connection, patient_id)
            if patient is not None:
                latest = queries.latest_reading(connection, patient_id)
                series = queries.vital_series(connection, patient_id, window=period, start=start, end=end)
                alerts = queries.patient_alerts(connection, patient_id, start=start, end=end)
                quarantine = queries.quarantine_counts(connection, patient_id, start=start, end=end)
                audit(connection, "care_patient_viewed", {"window": period.name}, patient_id)
        if patient is None:
            return refuse(request, clinician, status_code=404, message=t("not_found"), action="care_access_refused",
                          detail={"patient_id": patient_id[:100], "reason": "unknown_or_other_team"})
        thresholds = queries.thresholds(latest, rules)
        spec = charts.patient_charts(series, thresholds, alerts, t)
        return page(request, "patient.html", {
            "clinician": clinician, "patient": patient, "latest": latest, "window": period.name,
            "windows": list(queries.WINDOWS), "alerts": alerts, "quarantine": quarantine,
            "gaps": queries.gaps(series), "spec_json": json.dumps(spec, default=str), "now": now,
            "thresholds": thresholds})

    @app.get("/alerts")
    def alert_queue(request: Request, clinician: Clinician = Depends(signed_in)) -> Response:
        return page(request, "alerts.html", queue_context(request, clinician))

    @app.get("/alerts/rows")
    def alert_rows(request: Request, clinician: Clinician = Depends(signed_in)) -> Response:
        return page(request, "_alert_rows.html", queue_context(request, clinician))

    def queue_context(request: Request, clinician: Clinician) -> dict:
        with gate.as_clinician(clinician) as connection:
            alerts = queries.alert_queue(connection)
        done = request.query_params.get("done")
        alert_id = request.query_params.get("alert", "")
        flash = {"key": done, "alert_id": int(alert_id)} if done in DONE_KEYS and alert_id.isdigit() else None
        return {"clinician": clinician, "alerts": alerts, "now": clock(), "flash": flash}

    @app.post("/alerts/{alert_id}/{action}")
    def act(alert_id: str, action: str, request: Request, csrf_token: str = Form(""), note: str = Form(""),
            status: str = Form(""), clinician: Clinician = Depends(signed_in)) -> Response:
        """Acknowledge, resolve (with a reason) or escalate: ``transforms.alerts``' functions, as the clinician."""
        t = translator(request)
        if action not in ACTIONS or not alert_id.isdigit():
            return refuse(request, clinician, status_code=404, message=t("not_found"), action="care_access_refused",
                          detail={"alert_id": alert_id[:40], "action": action[:40], "reason": "unknown"})
        number = int(alert_id)
        if not csrf_matches(clinician.csrf_token, csrf_token):
            return refuse(request, clinician, status_code=403, message=t("bad_form"), action="care_form_refused",
                          detail={"alert_id": number, "action": action, "reason": "bad_csrf"})
        function, done = ACTIONS[action]
        note = note.strip()[:500] or None
        if action == "resolve" and note is None:
            return refuse(request, clinician, status_code=400, message=f"{t('action_refused')} {t('reason_required')}",
                          action="care_action_refused", detail={"alert_id": number, "action": action, "reason": "no_reason"})
        with gate.as_clinician(clinician) as connection:
            found = queries.alert(connection, number)
        if found is None:
            return refuse(request, clinician, status_code=404, message=t("not_found"), action="care_access_refused",
                          detail={"alert_id": number, "action": action, "reason": "unknown_or_other_team"})
        if status and status != found["status"]:
            # The form was made for another state of the alert (a replay, or someone acted meanwhile).
            return refuse(request, clinician, status_code=409,
                          message=f"{t('action_refused')} {t('status')}: {t('status_' + found['status'])}.",
                          action="care_action_refused", patient_id=found["patient_id"],
                          detail={"alert_id": number, "action": action, "reason": "stale_form",
                                  "form_status": status[:20], "status": found["status"]})
        try:
            with gate.as_clinician(clinician) as connection:
                function(connection, number, by=clinician.login, note=note, at=clock())
        except AlertActionError as error:
            return refuse(request, clinician, status_code=409, message=f"{t('action_refused')} {error}.",
                          action="care_action_refused", patient_id=found["patient_id"],
                          detail={"alert_id": number, "action": action, "reason": str(error)})
        return RedirectResponse(f"/alerts?done={done}&alert={number}", status_code=303)

    return app
