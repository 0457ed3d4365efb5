"""Admin pages: the audit log with its filters, the CSV export, and staff accounts."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from telehealth.users import Users
from tests.unit.console_support import (
    ADMIN_EMAIL,
    CLINICIAN_EMAIL,
    EMERGENCY,
    ROUTINE,
    Staff,
    add_staff,
    audit_actions,
    play,
    use_cheap_hashing,
)


@pytest.fixture
def admin(client: Any, services: Any, twilio: Any, monkeypatch: Any) -> Staff:
    use_cheap_hashing(monkeypatch)
    play(twilio, EMERGENCY, "+16175551111")
    play(twilio, ROUTINE, "+16175552222")
    add_staff(services, "admin")
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in()
    return staff


def test_the_audit_log_lists_who_did_what_newest_first(admin: Staff, services: Any) -> None:
    conversation_id = services.records.latest_conversation("+16175551111")["id"]
    admin.get(f"/console/{conversation_id}")
    html = admin.get("/console/audit").get_data(as_text=True)
    assert html.index("conversation_view</td>") < html.index("console_sign_in</td>")
    assert f'href="/console/{conversation_id}">conversation:{conversation_id}</a>' in html
    assert ADMIN_EMAIL in html


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("action=conversation_view", "conversation_view</td>", "console_sign_in</td>"),
        ("actor=cy.clin", "console_sign_in</td>", "conversation_view</td>"),
        ("target=conversation:", "conversation_view</td>", "console_sign_in</td>"),
    ],
)
def test_the_audit_log_filters(
    admin: Staff, client: Any, services: Any, query: str, shown: str, hidden: str
) -> None:
    conversation_id = services.records.latest_conversation("+16175551111")["id"]
    admin.get(f"/console/{conversation_id}")
    other = Staff(client.application.test_client())
    other.sign_in(email=CLINICIAN_EMAIL)
    html = admin.get(f"/console/audit?{query}").get_data(as_text=True)
    assert shown in html and hidden not in html


def test_the_audit_log_filters_by_date(admin: Staff) -> None:
    assert "0 entries" in admin.get("/console/audit?date_to=2000-01-01").get_data(as_text=True)
    assert "0 entries" not in admin.get("/console/audit?date_from=2000-01-01").get_data(
        as_text=True
    )


def test_viewing_the_audit_log_is_itself_audited(admin: Staff, services: Any) -> None:
    admin.get("/console/audit")
    assert audit_actions(services)[-1][:2] == (ADMIN_EMAIL, "audit_view")


def test_the_csv_export_is_masked_filtered_and_audited(admin: Staff, services: Any) -> None:
    response = admin.get("/console/conversations/export.csv?disposition=emergency")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="conversations.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1
    row = rows[0]
    assert (
        row["disposition"] == "emergency"
        and row["rule"] == "chest_pain"
        and row["red_flags"] == "chest_pain"
    )
    assert (
        row["phone"] == "'+1 *** *** 1111"
    )  # masked, and a spreadsheet will not read "+..." as a formula
    assert row["escalation"] == "pending"
    assert "6175551111" not in response.get_data(as_text=True)
    entry = audit_actions(services)[-1]
    assert entry[:2] == (ADMIN_EMAIL, "conversation_export")
    assert entry[3] == {"rows": 1, "detail_filters": {"disposition": "emergency"}}


def test_the_export_link_carries_the_filters(admin: Staff) -> None:
    html = admin.get("/console/?channel=sms&disposition=routine").get_data(as_text=True)
    assert 'href="/console/conversations/export.csv?disposition=routine&amp;channel=sms"' in html


def test_an_admin_adds_a_staff_account(admin: Staff, services: Any) -> None:
    admin.post(
        "/console/staff",
        {
            "email": "New.Nurse@Clinic.example",
            "name": "Nia Nurse",
            "role": "clinician",
            "password": "a long enough password",
            "phone": "617 555 0111",
        },
    )
    accounts = {u.email: u for u in Users(services.records).all()}
    assert accounts["new.nurse@clinic.example"].phone == "+16175550111"
    html = admin.get("/console/staff").get_data(as_text=True)
    assert "Account added." in html and "Nia Nurse" in html
    assert audit_actions(services)[-1][1:3] == (
        "user_add",
        f"user:{accounts['new.nurse@clinic.example'].id}",
    )
    assert "a long enough password" not in repr(audit_actions(services))


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {
                "email": ADMIN_EMAIL,
                "name": "Dup",
                "role": "admin",
                "password": "a long enough password",
            },
            "already exists",
        ),
        (
            {"email": "x@clinic.example", "name": "X", "role": "admin", "password": "short"},
            "at least 12 characters",
        ),
        (
            {
                "email": "x@clinic.example",
                "name": "X",
                "role": "root",
                "password": "a long enough password",
            },
            "role must be",
        ),
        (
            {
                "email": "not-an-email",
                "name": "X",
                "role": "admin",
                "password": "a long enough password",
            },
            "valid email",
        ),
    ],
)
def test_a_bad_account_is_refused_with_a_reason(
    admin: Staff, form: dict[str, str], message: str
) -> None:
    admin.post("/console/staff", form)
    assert message in admin.get("/console/staff").get_data(as_text=True)


def test_an_admin_deactivates_unlocks_and_reactivates(
    admin: Staff, services: Any, client: Any
) -> None:
    users = Users(services.records)
    clinician = users.id_for_email(CLINICIAN_EMAIL)
    other = Staff(client.application.test_client())
    for _ in range(5):
        other.sign_in(email=CLINICIAN_EMAIL, password="wrong guess")
    assert "locked until" in admin.get("/console/staff").get_data(as_text=True)
    admin.post(f"/console/staff/{clinician}/unlock")
    assert other.sign_in(email=CLINICIAN_EMAIL).status_code == 302
    admin.post(f"/console/staff/{clinician}/deactivate")
    assert other.get("/console/").status_code == 302
    admin.post(f"/console/staff/{clinician}/activate")
    assert other.sign_in(email=CLINICIAN_EMAIL).status_code == 302
    assert [e[1] for e in audit_actions(services) if e[1].startswith("user_")] == [
        "user_unlock",
        "user_deactivate",
        "user_activate",
    ]


def test_an_admin_cannot_deactivate_themselves(admin: Staff, services: Any) -> None:
    me = Users(services.records).id_for_email(ADMIN_EMAIL)
    admin.post(f"/console/staff/{me}/deactivate")
    assert "cannot deactivate your own account" in admin.get("/console/staff").get_data(
        as_text=True
    )
