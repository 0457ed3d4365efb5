"""The roster page: on call now and next, the week's gaps, and admins changing it (audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from telehealth.roster import Roster
from tests.unit.console_support import (
    CLINICIAN_EMAIL,
    Staff,
    add_staff,
    audit_actions,
    use_cheap_hashing,
)


@pytest.fixture
def roster(services: Any, clock: Any) -> Roster:
    """Thu 26 Nov 12:00 UTC: Dana is primary 08:00-20:00, Eli 20:00-08:00; then nobody."""
    roster = Roster(services.records)
    dana = roster.add_clinician(name="Dana Prime", role="physician", phone="+16175550111")
    eli = roster.add_clinician(name="Eli Night", role="nurse practitioner", phone="+16175550133")
    day = clock.now.replace(hour=8)
    roster.add_shift(dana, starts_at=day, ends_at=day + timedelta(hours=12), tier="primary")
    roster.add_shift(
        eli, starts_at=day + timedelta(hours=12), ends_at=day + timedelta(hours=24), tier="primary"
    )
    return roster


@pytest.fixture
def admin(client: Any, services: Any, monkeypatch: Any) -> Staff:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "admin")
    staff = Staff(client)
    staff.sign_in()
    return staff


def test_who_is_on_call_now_and_next(admin: Staff, roster: Roster) -> None:
    html = " ".join(admin.get("/console/roster").get_data(as_text=True).split())
    assert "On call now:</span> <strong>Dana Prime</strong>" in html
    assert "Eli Night from Thu 26 Nov 20:00" in html
    assert "Nobody</strong> — pages reach nobody (no supervisor number set)" in html  # no backup


def test_gaps_in_the_coming_week_are_highlighted(admin: Staff, roster: Roster) -> None:
    html = admin.get("/console/roster").get_data(as_text=True)
    assert (
        'class="gap-item">No <strong>primary</strong> from Fri 27 Nov 08:00 to Thu 03 Dec 12:00'
        in html
    )
    assert (
        'class="gap-item">No <strong>backup</strong> from Thu 26 Nov 12:00 to Thu 03 Dec 12:00'
        in html
    )
    assert '<rect class="gap"' in html and '<svg class="chart"' in html


def test_the_week_is_shown_in_the_console_time_zone(
    admin: Staff, roster: Roster, services: Any
) -> None:
    services.settings = services.settings.with_overrides(console_timezone="America/New_York")
    html = admin.get("/console/roster").get_data(as_text=True)
    assert "Eli Night from Thu 26 Nov 15:00" in html


def test_an_admin_adds_a_clinician_and_a_shift(admin: Staff, services: Any, clock: Any) -> None:
    assert (
        admin.post(
            "/console/roster/clinicians",
            {"name": "Fay New", "role": "physician", "phone": "(617) 555-0177"},
        ).status_code
        == 302
    )
    clinician = Roster(services.records).clinician_by_phone("+16175550177")
    assert clinician and clinician["name"] == "Fay New"
    admin.post(
        "/console/roster/shifts",
        {
            "clinician_id": str(clinician["id"]),
            "tier": "backup",
            "starts_at": "2026-11-26T10:00",
            "ends_at": "2026-11-26T22:00",
        },
    )
    assert [c.name for c in Roster(services.records).on_call("backup", clock.now)] == ["Fay New"]
    changes = [(e[1], e[2]) for e in audit_actions(services) if e[1].startswith("roster_")]
    assert changes[0] == ("roster_add", f"clinician:{clinician['id']}")
    assert changes[1][0] == "roster_shift_add"


def test_a_bad_shift_is_refused_with_a_reason(admin: Staff, roster: Roster) -> None:
    dana = roster.clinician_by_phone("+16175550111")
    admin.post(
        "/console/roster/shifts",
        {
            "clinician_id": str(dana["id"]),
            "tier": "primary",
            "starts_at": "2026-11-27T10:00",
            "ends_at": "2026-11-27T09:00",
        },
    )
    html = admin.get("/console/roster").get_data(as_text=True)
    assert "The shift was not added: a shift must end after it starts" in html
    admin.post(
        "/console/roster/shifts",
        {"clinician_id": "", "tier": "primary", "starts_at": "", "ends_at": ""},
    )
    assert "choose a clinician" in admin.get("/console/roster").get_data(as_text=True)


def test_a_duplicate_or_invalid_number_is_refused(admin: Staff, roster: Roster) -> None:
    admin.post("/console/roster/clinicians", {"name": "Dup", "phone": "+16175550111"})
    assert "already on the roster" in admin.get("/console/roster").get_data(as_text=True)
    admin.post("/console/roster/clinicians", {"name": "Bad", "phone": "12"})
    assert "a valid mobile number" in admin.get("/console/roster").get_data(as_text=True)


def test_an_admin_removes_a_shift_and_a_clinician(
    admin: Staff, roster: Roster, services: Any, clock: Any
) -> None:
    shift = roster.shifts(ending_after=clock.now)[0]
    admin.post(f"/console/roster/shifts/{shift['id']}/remove")
    assert roster.on_call("primary", clock.now) == []
    eli = roster.clinician_by_phone("+16175550133")
    admin.post(f"/console/roster/clinicians/{eli['id']}/remove")
    assert roster.clinician_by_phone("+16175550133") is None
    assert [e[1] for e in audit_actions(services) if e[1].startswith("roster_")] == [
        "roster_shift_remove",
        "roster_remove",
    ]


def test_a_clinician_sees_the_roster_but_cannot_change_it(
    client: Any, services: Any, roster: Roster, monkeypatch: Any
) -> None:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    assert "Dana Prime" in staff.get("/console/roster").get_data(as_text=True)
    assert (
        staff.post("/console/roster/clinicians", {"name": "X", "phone": "+16175550188"}).status_code
        == 403
    )
    assert roster.clinician_by_phone("+16175550188") is None
