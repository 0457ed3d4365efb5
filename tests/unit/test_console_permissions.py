"""Who may see what: every console page and form, for a stranger, a clinician and an admin."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.console_support import (
    CLINICIAN_EMAIL,
    EMERGENCY,
    Staff,
    add_staff,
    play,
    use_cheap_hashing,
)

# (path, admins only)
PAGES = [
    ("/console/", False),
    ("/console/?disposition=emergency&page=2", False),
    ("/console/{conversation}", False),
    ("/console/board", False),
    ("/console/board/live", False),
    ("/console/roster", False),
    ("/console/dashboard", False),
    ("/console/dashboard?days=30", False),
    ("/console/audit", True),
    ("/console/audit?action=conversation_view", True),
    ("/console/conversations/export.csv", True),
    ("/console/staff", True),
]
# (path, form, admins only)
FORMS = [
    ("/console/{conversation}/notes", {"outcome": "self_care", "text": "ok"}, False),
    ("/console/board/{escalation}/acknowledge", {}, False),
    ("/console/roster/clinicians", {"name": "New Person", "phone": "+16175550144"}, True),
    ("/console/roster/clinicians/1/remove", {}, True),
    (
        "/console/roster/shifts",
        {
            "clinician_id": "1",
            "tier": "primary",
            "starts_at": "2026-11-27T08:00",
            "ends_at": "2026-11-27T20:00",
        },
        True,
    ),
    ("/console/roster/shifts/1/remove", {}, True),
    (
        "/console/staff",
        {
            "email": "x@clinic.example",
            "name": "X",
            "role": "admin",
            "password": "a long enough password",
        },
        True,
    ),
    ("/console/staff/1/unlock", {}, True),
    ("/console/staff/1/deactivate", {}, True),
]


@pytest.fixture
def ids(services: Any, twilio: Any, monkeypatch: Any) -> dict[str, int]:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "admin")
    add_staff(services, "clinician")
    play(twilio, EMERGENCY, "+16175550123")
    conversation = services.records.list_conversations()[0]
    return {"conversation": conversation["id"], "escalation": conversation["escalation"]["id"]}


@pytest.mark.parametrize(("path", "admin_only"), PAGES, ids=[p for p, _ in PAGES])
def test_an_anonymous_visitor_is_sent_to_sign_in(
    client: Any, ids: dict[str, int], path: str, admin_only: bool
) -> None:
    response = client.get(path.format(**ids))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")


@pytest.mark.parametrize(("path", "admin_only"), PAGES, ids=[p for p, _ in PAGES])
def test_a_clinician_sees_their_pages_and_gets_403_on_admin_pages(
    client: Any, ids: dict[str, int], path: str, admin_only: bool
) -> None:
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    response = staff.get(path.format(**ids))
    assert response.status_code == (403 if admin_only else 200)
    if admin_only:
        assert "This page is for admins" in response.get_data(as_text=True)


@pytest.mark.parametrize(("path", "admin_only"), PAGES, ids=[p for p, _ in PAGES])
def test_an_admin_sees_every_page(
    client: Any, ids: dict[str, int], path: str, admin_only: bool
) -> None:
    staff = Staff(client)
    staff.sign_in()
    assert staff.get(path.format(**ids)).status_code == 200


@pytest.mark.parametrize(("path", "form", "admin_only"), FORMS, ids=[p for p, _, _ in FORMS])
def test_forms_need_a_signed_in_user(
    client: Any, ids: dict[str, int], path: str, form: dict[str, str], admin_only: bool
) -> None:
    staff = Staff(client)
    staff.csrf()  # a real token from the sign-in page: the refusal is about who, not CSRF
    response = staff.post(path.format(**ids), form)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in")


@pytest.mark.parametrize(("path", "form", "admin_only"), FORMS, ids=[p for p, _, _ in FORMS])
def test_clinicians_cannot_change_the_roster_or_accounts(
    client: Any, ids: dict[str, int], path: str, form: dict[str, str], admin_only: bool
) -> None:
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    response = staff.post(path.format(**ids), form)
    assert response.status_code == (403 if admin_only else 302)


def test_the_navigation_shows_admin_pages_to_admins_only(client: Any, ids: dict[str, int]) -> None:
    clinician = Staff(client)
    clinician.sign_in(email=CLINICIAN_EMAIL)
    page = clinician.get("/console/").get_data(as_text=True)
    assert (
        "Audit log" not in page and "Export CSV" not in page and 'href="/console/staff"' not in page
    )
    clinician.post("/console/sign-out")
    admin = Staff(client)
    admin.sign_in()
    page = admin.get("/console/").get_data(as_text=True)
    assert "Audit log" in page and "Export CSV" in page and 'href="/console/staff"' in page


def test_clinicians_see_the_roster_without_the_forms_that_change_it(
    client: Any, ids: dict[str, int]
) -> None:
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    page = staff.get("/console/roster").get_data(as_text=True)
    assert "On call now" in page
    assert "Add a shift" not in page and "Remove" not in page
