"""The live board: open escalations, who was paged, and taking a case the way an SMS reply does."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.console_support import (
    BACKUP_PHONE,
    CLINICIAN_EMAIL,
    EMERGENCY,
    PRIMARY_PHONE,
    URGENT_FEVER,
    Staff,
    add_staff,
    audit_actions,
    play,
    put_on_call,
    use_cheap_hashing,
)

PATIENT_A, PATIENT_B = "+16175551234", "+16175555678"


@pytest.fixture
def cases(services: Any, twilio: Any, clock: Any) -> dict[str, int]:
    """An urgent case flagged at 12:00 and an emergency at 12:05; the clock then stands at 12:12."""
    put_on_call(services, clock)
    play(twilio, URGENT_FEVER, PATIENT_A)
    clock.advance(minutes=5)
    play(twilio, EMERGENCY, PATIENT_B)
    clock.advance(minutes=7)
    return {
        "urgent": services.records.latest_conversation(PATIENT_A)["escalation"]["id"],
        "emergency": services.records.latest_conversation(PATIENT_B)["escalation"]["id"],
    }


@pytest.fixture
def staff(client: Any, services: Any, monkeypatch: Any, cases: dict[str, int]) -> Staff:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    return staff


def _case_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="case-(\d+)"', html)]


def test_open_escalations_emergencies_first_with_time_since_the_flag_and_who_was_paged(
    staff: Staff, cases: dict[str, int]
) -> None:
    html = staff.get("/console/board").get_data(as_text=True)
    assert _case_ids(html) == [cases["emergency"], cases["urgent"]]
    assert (
        "flagged <strong>7 min</strong> ago" in html
        and "flagged <strong>12 min</strong> ago" in html
    )
    assert "Dana Prime by text (queued)" in html and "Dana Prime by call (queued)" in html
    assert "58y: chest pain or short of breath" in html
    assert "+1 *** *** 5678" in html and PATIENT_B not in html


def test_the_board_refreshes_itself_from_a_fragment(staff: Staff, cases: dict[str, int]) -> None:
    page = staff.get("/console/board").get_data(as_text=True)
    assert 'data-refresh-url="/console/board/live"' in page
    assert '<script src="/console/static/console.js" defer></script>' in page
    fragment = staff.get("/console/board/live", headers={"X-Console-Refresh": "1"}).get_data(
        as_text=True
    )
    assert "<html" not in fragment and 'data-open-count="2"' in fragment
    assert _case_ids(fragment) == _case_ids(page)


def test_taking_a_case_from_the_board_is_the_same_as_the_sms_reply(
    staff: Staff, cases: dict[str, int], services: Any
) -> None:
    case = cases["emergency"]
    before = len(services.pager.sent)
    response = staff.post(f"/console/board/{case}/acknowledge")
    assert response.status_code == 302 and response.headers["Location"] == "/console/board"
    escalation = services.records.get_escalation(case)
    assert (
        escalation["status"] == "acknowledged" and escalation["acknowledged_by"] == "Cy Clinician"
    )
    assert escalation["next_due_at"] is None
    assert [e["detail"] for e in escalation["events"] if e["kind"] == "acknowledged"] == [
        {"by": "Cy Clinician"}
    ]
    notices = [s for s in services.pager.sent[before:] if "was taken by Cy Clinician" in s.body]
    assert [n.to for n in notices] == [PRIMARY_PHONE]  # everyone the case paged hears it is taken
    page = staff.get("/console/board").get_data(as_text=True)
    assert f"Case {case} is yours" in page
    assert _case_ids(page) == [cases["urgent"]]
    assert "Taken in the last 12 hours" in page and "Cy Clinician at 12:12" in page


def test_a_clinician_on_the_roster_is_not_told_about_their_own_acknowledgement(
    client: Any, services: Any, cases: dict[str, int], monkeypatch: Any
) -> None:
    use_cheap_hashing(monkeypatch)
    add_staff(
        services, "clinician", email="dana@clinic.example", name="Dana Prime", phone=PRIMARY_PHONE
    )
    staff = Staff(client)
    staff.sign_in(email="dana@clinic.example")
    before = len(services.pager.sent)
    staff.post(f"/console/board/{cases['emergency']}/acknowledge")
    assert not [s for s in services.pager.sent[before:] if s.to == PRIMARY_PHONE]


def test_a_case_taken_by_someone_else_says_by_whom(
    staff: Staff, cases: dict[str, int], services: Any
) -> None:
    from telehealth import acknowledgements

    acknowledgements.take(services, cases["urgent"], BACKUP_PHONE, "Bo Backup")
    staff.post(f"/console/board/{cases['urgent']}/acknowledge")
    assert f"Case {cases['urgent']} was already taken by Bo Backup." in staff.get(
        "/console/board"
    ).get_data(as_text=True)
    assert services.records.get_escalation(cases["urgent"])["acknowledged_by"] == "Bo Backup"


def test_an_unknown_case_is_404(staff: Staff) -> None:
    assert staff.post("/console/board/999/acknowledge").status_code == 404


def test_acknowledging_is_audited(staff: Staff, cases: dict[str, int], services: Any) -> None:
    staff.post(f"/console/board/{cases['emergency']}/acknowledge")
    staff.post(f"/console/board/{cases['emergency']}/acknowledge")
    acks = [e for e in audit_actions(services) if e[1] == "escalation_acknowledged"]
    assert [(e[0], e[2], e[3]["result"]) for e in acks] == [
        (CLINICIAN_EMAIL, f"escalation:{cases['emergency']}", "taken"),
        (CLINICIAN_EMAIL, f"escalation:{cases['emergency']}", "yours"),
    ]


def test_an_empty_board_says_so(client: Any, services: Any, monkeypatch: Any) -> None:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    assert "No open escalations" in staff.get("/console/board").get_data(as_text=True)
