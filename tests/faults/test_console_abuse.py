"""The staff console under attack: SQL injection and XSS in every filter and form field, forms
without (or with a stolen) CSRF token, session fixation, tampered cookies.

What tests/unit/test_console_* already prove is not repeated here: another role's pages and
forms (403, test_console_permissions), a patient's text and a note escaped, sign-in's CSRF and
open-redirect checks, cookie flags and security headers (test_console_auth). This adds every
filter and field, every form without a valid token, and the session attacks. Each test runs on
SQLite and again on a fresh PostgreSQL database (marked integration): an injection is only
proven harmless against the database it would attack.

What an attacker gets: 4xx or an ignored filter, never a 500, never their markup rendered, and
no row changed or lost.
"""
from __future__ import annotations

import itertools
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import fakeredis
import pytest
from sqlalchemy import func, select

from telehealth import services as services_module
from telehealth.app import create_app
from telehealth.jobs import InlineJobs
from telehealth.paging import FakePager
from telehealth.settings import Settings
from tests.conftest import Twilio
from tests.unit.console_support import (
    ADMIN_EMAIL, CLINICIAN_EMAIL, EMERGENCY, ROUTINE, Staff, add_staff, play, use_cheap_hashing,
)
from tests.unit.test_console_permissions import FORMS

TOKEN = "console-abuse-token"
SQL = ["' OR '1'='1", "1; DROP TABLE conversations; --", "'); DELETE FROM audit_log; --",
       "1 UNION SELECT password_hash FROM users --", "%", "_", "\\", "' OR pg_sleep(5) --"]
XSS = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "<svg/onload=alert(1)>",
       "javascript:alert(1)", "</title><iframe src=//evil>", "' autofocus onfocus='alert(1)"]
MARKUP = ["<script>alert", "<img src=x", "<svg/onload", "<iframe", "onfocus='alert"]
FILTERS = {
    "/console/": ["date_from", "date_to", "disposition", "channel", "status", "escalation", "last4", "page"],
    "/console/audit": ["actor", "action", "target", "date_from", "date_to", "page"],
    "/console/conversations/export.csv": ["date_from", "disposition", "status", "escalation", "last4", "page"],
    "/console/dashboard": ["days"],
    "/console/board": ["page"],
    "/console/roster": ["week"],
    "/console/sign-in": ["next"],
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory(prefix="console-abuse-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'c.sqlite3'}"
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from telehealth.records import migrate

    admin_url = request.getfixturevalue("postgres_url")
    name = f"telehealth_console_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def line(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_cheap_hashing(monkeypatch)
    settings = Settings(twilio_auth_token=TOKEN, database_url=database, run_jobs_inline=True,
                        api_token="console-api", secret_key="console-secret", console_secure_cookies=False)
    services = services_module.build(settings, pager=FakePager(), client=fakeredis.FakeRedis(),
                                     jobs=InlineJobs(synchronous=True), create_schema=True)
    services.jobs.services = services  # type: ignore[attr-defined]
    app = create_app(services=services)
    add_staff(services, "admin")
    add_staff(services, "clinician")
    twilio = Twilio(app.test_client(), token=TOKEN)
    play(twilio, EMERGENCY, "+16175550281")
    play(twilio, ROUTINE, "+16175550282")
    yield app, services
    services.records.dispose()


def counts(services: Any) -> dict[str, int]:
    """Rows of every table an injection could damage (the audit log only grows)."""
    from telehealth.alerts import Alert
    from telehealth.notes import Note
    from telehealth.records import AuditEntry, Conversation, Escalation, Turn
    from telehealth.roster import Clinician, Shift
    from telehealth.users import User

    tables = {"conversations": Conversation, "turns": Turn, "escalations": Escalation, "alerts": Alert,
              "notes": Note, "clinicians": Clinician, "shifts": Shift, "staff": User, "audit": AuditEntry}
    with services.records.transaction() as session:
        return {name: session.scalar(select(func.count()).select_from(model)) for name, model in tables.items()}


def unchanged(before: dict[str, int], after: dict[str, int]) -> bool:
    return {k: v for k, v in after.items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"} \
        and after["audit"] >= before["audit"]


def assert_no_markup(html: str) -> None:
    for marker in MARKUP:
        assert marker not in html, f"{marker!r} rendered unescaped"


def test_injection_in_every_filter_is_ignored_or_refused_never_run_and_never_rendered(line: Any) -> None:
    app, services = line
    admin = Staff(app.test_client())
    admin.sign_in(ADMIN_EMAIL)
    before = counts(services)
    for (path, names), payload in itertools.product(FILTERS.items(), SQL + XSS):
        for name in names:
            response = admin.get(path, query_string={name: payload})
            assert response.status_code in (200, 302), (path, name, payload, response.status_code)
            assert_no_markup(response.get_data(as_text=True))
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/console"), response.headers["Location"]
    for payload in SQL + XSS:  # in the path: routes take integers only
        assert admin.get(f"/console/{payload}").status_code == 404
    assert unchanged(before, counts(services))
    assert admin.get("/console/?status=completed").status_code == 200  # the tables are all still there


def test_injection_in_every_form_field_is_stored_as_text_and_shown_escaped(line: Any) -> None:
    app, services = line
    admin = Staff(app.test_client())
    admin.sign_in(ADMIN_EMAIL)
    conversation = services.records.latest_conversation("+16175550281")["id"]
    before = counts(services)
    for n, payload in enumerate(SQL + XSS):
        responses = [
            admin.post(f"/console/{conversation}/notes", {"outcome": "note_only", "text": payload}),
            admin.post(f"/console/{conversation}/notes", {"outcome": payload, "text": "x"}),
            admin.post("/console/roster/clinicians", {"name": payload, "role": payload, "phone": f"+1617555{n:04d}"}),
            admin.post("/console/roster/clinicians", {"name": "Phone Field", "phone": payload}),
            admin.post("/console/roster/shifts", {"clinician_id": payload, "tier": payload,
                                                  "starts_at": payload, "ends_at": payload}),
            admin.post("/console/staff", {"email": f"user{n}@clinic.example", "name": payload, "role": "clinician",
                                          "password": "a long enough password"}),
            admin.post("/console/staff", {"email": payload, "name": "X", "role": payload, "password": payload}),
        ]
        assert all(r.status_code in (302, 400) for r in responses), [r.status_code for r in responses]
    pages = [f"/console/{conversation}", "/console/roster", "/console/staff", "/console/audit", "/console/board",
             "/console/"]
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page
        assert_no_markup(response.get_data(as_text=True))
    html = admin.get(f"/console/{conversation}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html  # kept, as text
    from telehealth.notes import Notes

    texts = [note["text"] for note in Notes(services.records).for_conversation(conversation)]
    assert texts == SQL + XSS  # stored exactly as typed; the bad outcomes were refused
    after = counts(services)
    assert after["conversations"] == before["conversations"] and after["turns"] == before["turns"]
    assert after["clinicians"] == before["clinicians"] + len(SQL + XSS)


def test_no_form_is_accepted_without_this_session_s_csrf_token(line: Any) -> None:
    app, services = line
    admin = Staff(app.test_client())
    admin.sign_in(ADMIN_EMAIL)
    other = Staff(app.test_client())
    other.sign_in(CLINICIAN_EMAIL)
    stolen = other.csrf("/console/board")  # a real token, from someone else's session
    ids = {"conversation": services.records.latest_conversation("+16175550281")["id"],
           "escalation": services.records.latest_conversation("+16175550281")["escalation"]["id"]}
    before = counts(services)
    for path, form, _ in [*FORMS, ("/console/sign-out", {}, False)]:
        url = path.format(**ids)
        for token in (None, "", "guessed", stolen, stolen + "x"):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            response = admin.client.post(url, data=data)
            assert response.status_code == 400, (url, token, response.status_code)
        header = admin.client.post(url, data=form, headers={"X-CSRF-Token": stolen})
        assert header.status_code == 400
    assert unchanged(before, counts(services))
    assert admin.get("/console/").status_code == 200  # still signed in: sign-out needed the token too


def test_a_session_cookie_planted_before_sign_in_is_worthless_after_it(line: Any) -> None:
    app, _ = line
    attacker = Staff(app.test_client())
    planted_token = attacker.csrf()  # the attacker's pre-sign-in session: a cookie and its token
    planted = attacker.client.get_cookie("telehealth_console", path="/console")
    assert planted is not None

    victim = Staff(app.test_client())
    victim.client.set_cookie("telehealth_console", planted.value, path="/console")
    response = victim.client.post("/console/sign-in", data={
        "email": CLINICIAN_EMAIL, "password": "correct horse battery staple", "csrf_token": planted_token})
    assert response.status_code == 302
    signed_in = victim.client.get_cookie("telehealth_console", path="/console")
    assert signed_in is not None and signed_in.value != planted.value
    assert victim.get("/console/").status_code == 200
    assert victim.csrf("/console/board") != planted_token  # a new session, a new token

    assert attacker.get("/console/").status_code == 302  # the planted cookie signs nobody in
    replay = Staff(app.test_client())
    replay.client.set_cookie("telehealth_console", planted.value, path="/console")
    assert replay.get("/console/").status_code == 302


def test_a_tampered_or_forged_session_cookie_signs_nobody_in(line: Any) -> None:
    app, services = line
    clinician = Staff(app.test_client())
    clinician.sign_in(CLINICIAN_EMAIL)
    cookie = clinician.client.get_cookie("telehealth_console", path="/console").value
    from itsdangerous import URLSafeTimedSerializer

    forged_as_admin = URLSafeTimedSerializer("not-the-secret", salt="cookie-session").dumps(
        {"uid": 1, "key": "guess", "seen": 9e9})
    for value in (cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"), forged_as_admin, "", "null"):
        thief = Staff(app.test_client())
        thief.client.set_cookie("telehealth_console", value, path="/console")
        assert thief.get("/console/").status_code == 302
        assert thief.get("/console/audit").status_code == 302
