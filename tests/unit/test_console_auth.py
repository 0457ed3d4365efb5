"""Signing in to the console: passwords, lockout, idle sign-out, CSRF, cookies and headers."""

from __future__ import annotations

from typing import Any

import pytest

from telehealth.users import Users
from tests.conftest import api_get
from tests.unit.console_support import (
    ADMIN_EMAIL,
    CLINICIAN_EMAIL,
    EMERGENCY,
    PASSWORD,
    Staff,
    add_staff,
    audit_actions,
    play,
    use_cheap_hashing,
)


@pytest.fixture
def staff(client: Any, services: Any, monkeypatch: Any) -> Staff:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "admin")
    add_staff(services, "clinician")
    return Staff(client)


def test_an_anonymous_visitor_is_sent_to_sign_in_and_back(staff: Staff) -> None:
    response = staff.get("/console/board")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/sign-in?next=/console/board"
    signed_in = staff.sign_in(next_path="/console/board")
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/console/board"
    assert "Open escalations" in staff.get("/console/board").get_data(as_text=True)


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/twilio/sms", "/\\evil.example"]
)
def test_sign_in_never_redirects_off_the_console(staff: Staff, target: str) -> None:
    response = staff.sign_in(next_path=target)
    assert response.headers["Location"] == "/console/"


def test_a_wrong_password_is_refused_without_saying_whether_the_email_exists(staff: Staff) -> None:
    wrong_password = staff.sign_in(password="not the password")
    unknown_email = staff.sign_in(email="nobody@clinic.example")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert "Wrong email or password" in wrong_password.get_data(as_text=True)
    assert wrong_password.get_data(as_text=True).replace(
        ADMIN_EMAIL, "X"
    ) == unknown_email.get_data(as_text=True).replace("nobody@clinic.example", "X")
    assert staff.get("/console/").status_code == 302


def test_passwords_are_stored_as_argon2id_hashes_with_the_default_costs(services: Any) -> None:
    from sqlalchemy import select

    from telehealth.users import User

    add_staff(services, "admin")
    with services.records.transaction() as session:
        hashes = list(session.scalars(select(User.password_hash)))
    assert hashes and all(
        h.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in h for h in hashes
    )


def test_five_failures_lock_the_account_for_fifteen_minutes(staff: Staff, clock: Any) -> None:
    for _ in range(5):
        assert staff.sign_in(password="guess").status_code == 401
    assert staff.sign_in().status_code == 401  # the right password, but locked
    clock.advance(minutes=14)
    assert staff.sign_in().status_code == 401
    clock.advance(minutes=2)
    assert staff.sign_in().status_code == 302


def test_a_success_resets_the_failure_count(staff: Staff, services: Any) -> None:
    for _ in range(4):
        staff.sign_in(password="guess")
    assert staff.sign_in().status_code == 302
    for _ in range(4):
        staff.sign_in(password="guess")
    assert staff.sign_in().status_code == 302


def test_lockout_settings_are_read_from_settings(
    services: Any, client: Any, monkeypatch: Any
) -> None:
    use_cheap_hashing(monkeypatch)
    services.settings = services.settings.with_overrides(
        console_lockout_failures=2, console_lockout_minutes=1
    )
    add_staff(services, "admin")
    staff = Staff(client)
    staff.sign_in(password="guess")
    staff.sign_in(password="guess")
    assert staff.sign_in().status_code == 401


def test_idle_for_fifteen_minutes_signs_out(staff: Staff, clock: Any) -> None:
    staff.sign_in()
    clock.advance(minutes=14)
    assert staff.get("/console/").status_code == 200  # activity restarts the idle time
    clock.advance(minutes=14, seconds=59)
    assert staff.get("/console/").status_code == 200
    clock.advance(minutes=15, seconds=1)
    response = staff.get("/console/")
    assert response.status_code == 302 and response.headers["Location"].startswith(
        "/console/sign-in"
    )
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after 15 minutes without activity" in page


def test_the_idle_time_is_configurable(services: Any, staff: Staff, clock: Any) -> None:
    services.settings = services.settings.with_overrides(console_idle_minutes=5)
    staff.sign_in()
    clock.advance(minutes=6)
    assert staff.get("/console/").status_code == 302


def test_the_board_refreshing_itself_does_not_keep_a_session_alive(
    staff: Staff, clock: Any
) -> None:
    staff.sign_in()
    for _ in range(3):
        clock.advance(minutes=4)
        assert (
            staff.get("/console/board/live", headers={"X-Console-Refresh": "1"}).status_code == 200
        )
    clock.advance(minutes=4)
    response = staff.get("/console/board/live", headers={"X-Console-Refresh": "1"})
    assert response.status_code == 401  # the page's script reloads, which lands on sign-in


def test_signing_out_ends_the_session_even_for_a_copied_cookie(
    staff: Staff, client: Any, app: Any
) -> None:
    staff.sign_in()
    copied = client.get_cookie("telehealth_console", path="/console").value
    assert staff.post("/console/sign-out").headers["Location"] == "/console/sign-in"
    assert staff.get("/console/").status_code == 302
    thief = app.test_client()
    thief.set_cookie("telehealth_console", copied, path="/console")
    assert thief.get("/console/").status_code == 302


def test_a_deactivated_account_is_signed_out_at_once(staff: Staff, services: Any) -> None:
    staff.sign_in(email=CLINICIAN_EMAIL)
    user_id = Users(services.records).id_for_email(CLINICIAN_EMAIL)
    assert user_id is not None
    Users(services.records).set_active(user_id, False)
    assert staff.get("/console/").status_code == 302
    assert staff.sign_in(email=CLINICIAN_EMAIL).status_code == 401


def test_every_form_needs_the_csrf_token(staff: Staff, client: Any) -> None:
    staff.sign_in()
    forged = client.post("/console/sign-out")
    assert forged.status_code == 400
    wrong = client.post("/console/sign-out", data={"csrf_token": "guessed"})
    assert wrong.status_code == 400
    assert staff.get("/console/").status_code == 200  # still signed in


def test_sign_in_itself_needs_the_csrf_token(staff: Staff, client: Any) -> None:
    response = client.post("/console/sign-in", data={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert response.status_code == 400


def test_the_session_cookie_is_secure_http_only_same_site_and_scoped_to_the_console(
    staff: Staff,
) -> None:
    cookie = staff.sign_in().headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie


def test_console_pages_carry_the_security_headers(staff: Staff) -> None:
    staff.sign_in()
    for path in ("/console/sign-in", "/console/", "/console/board"):
        headers = staff.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp
            and "frame-ancestors 'none'" in csp
        )
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"


def test_patient_pages_are_not_stored(staff: Staff, twilio: Any, services: Any) -> None:
    play(twilio, EMERGENCY, "+16175550123")
    staff.sign_in()
    conversation_id = services.records.list_conversations()[0]["id"]
    assert staff.get(f"/console/{conversation_id}").headers["Cache-Control"] == "no-store"


def test_the_webhooks_and_the_api_keep_their_own_headers(
    staff: Staff, twilio: Any, client: Any
) -> None:
    response = twilio.post(
        "/twilio/sms",
        {
            "From": "+16175550123",
            "To": "+12025550100",
            "Body": "back pain",
            "MessageSid": "SM" + "9" * 32,
        },
    )
    assert response.status_code == 200 and response.mimetype == "text/xml"
    api = api_get(client, "/api/conversations")
    for answer in (response, api, client.get("/healthz")):
        assert "Content-Security-Policy" not in answer.headers
        assert "Set-Cookie" not in answer.headers


def test_the_static_files_are_served_from_this_server(client: Any) -> None:
    css = client.get("/console/static/console.css")
    js = client.get("/console/static/console.js")
    assert css.status_code == js.status_code == 200
    for asset in (css, js):
        assert "http://" not in asset.get_data(as_text=True) and "https://" not in asset.get_data(
            as_text=True
        )
        asset.close()


def test_pages_load_no_script_or_style_from_elsewhere_and_inline_none(staff: Staff) -> None:
    staff.sign_in()
    for path in (
        "/console/",
        "/console/board",
        "/console/roster",
        "/console/dashboard",
        "/console/staff",
    ):
        html = staff.get(path).get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html and "onclick" not in html
        assert 'src="http' not in html and 'href="http' not in html


def test_sign_in_and_out_and_failures_are_audited_without_the_typed_text(
    staff: Staff, services: Any
) -> None:
    staff.sign_in(password="hunter2-typo")
    staff.sign_in()
    staff.post("/console/sign-out")
    entries = audit_actions(services)
    assert [e[1] for e in entries] == [
        "console_sign_in_failed",
        "console_sign_in",
        "console_sign_out",
    ]
    assert "hunter2-typo" not in repr(entries)
    assert entries[0][2] == entries[1][2]  # the failed try names the account (user:<id>)
