"""Clinicians taking a case by text: "1", "ACK", "ACK 4821", through the signed SMS webhook."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from telehealth import escalation
from telehealth.acknowledgements import HOW_TO
from telehealth.roster import Roster
from tests.conftest import BACKUP, BACKUP_NAME, PATIENT, PRIMARY, PRIMARY_NAME, SUPERVISOR, Clock
from tests.unit.escalation_support import case, events, open_case, pages, play_emergency

OTHER_PATIENT = "+16175550177"


def _yours(case_id: int, number: str = "+1 617-555-0123") -> str:
    return f"Thank you, case {case_id} is yours. Call the patient at {number} now."


def _reply(twilio: Any, body: str, phone: str = PRIMARY) -> str:
    replies = twilio.sms(body, phone=phone)
    assert len(replies) == 1
    return replies[0]


@pytest.mark.parametrize("text", ["1", "ACK", "ack {id}", "yes", "Ack #{id}", "take case {id}", "OK", " 1. "])
def test_a_clinician_takes_the_case_by_text(
    twilio: Any, services: Any, on_call: Roster, clock: Clock, text: str,
) -> None:
    case_id = play_emergency(twilio, services)
    clock.advance(seconds=45)

    assert _reply(twilio, text.format(id=case_id)) == _yours(case_id)
    found = case(services, case_id)
    assert (found["status"], found["acknowledged_by"], found["acknowledged_at"]) == (
        "acknowledged", PRIMARY_NAME, clock.now.isoformat())
    assert [(e["at"], e["detail"]) for e in events(services, case_id, "acknowledged")] == [
        (clock.now.isoformat(), {"by": PRIMARY_NAME})]


def test_with_two_open_cases_and_no_code_the_newest_is_taken_first(
    services: Any, twilio: Any, on_call: Roster, clock: Clock,
) -> None:
    older = open_case(services)
    clock.advance(seconds=30)
    newer = open_case(services, phone=OTHER_PATIENT)

    assert _reply(twilio, "1") == _yours(newer, "+1 617-555-0177")
    assert case(services, older)["status"] == "pending"
    assert _reply(twilio, "1") == _yours(older)
    assert case(services, older)["acknowledged_by"] == PRIMARY_NAME


def test_a_case_code_takes_that_case_not_the_newest(
    services: Any, twilio: Any, on_call: Roster, clock: Clock,
) -> None:
    older = open_case(services)
    clock.advance(seconds=30)
    newer = open_case(services, phone=OTHER_PATIENT)

    assert _reply(twilio, f"ACK {older}") == _yours(older)
    assert case(services, newer)["status"] == "pending"


def test_others_already_paged_are_told_who_took_it_and_later_steps_page_nobody(
    services: Any, twilio: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    case_id = open_case(services)
    clock.now = start + timedelta(seconds=300)
    escalation.sweep(services)  # primary (twice) and backup paged; the supervisor not yet
    clock.advance(seconds=15)

    assert _reply(twilio, "1", phone=BACKUP) == _yours(case_id)
    notices = [s for s in services.pager.sent if s.body.startswith("Case")]
    assert [(s.to, s.channel, s.body) for s in notices] == [
        (PRIMARY, "sms", f"Case {case_id} was taken by {BACKUP_NAME}. No need to act.")]
    assert [e["detail"]["to"] for e in events(services, case_id, "notice_sent")] == [PRIMARY_NAME]

    sent = len(services.pager.sent)
    for seconds in (600, 900, 1800, 2700, 5000):
        clock.now = start + timedelta(seconds=seconds)
        escalation.sweep(services)
    assert len(services.pager.sent) == sent
    assert (SUPERVISOR, "sms") not in pages(services)
    assert case(services, case_id)["status"] == "acknowledged"


@pytest.mark.parametrize("again", ["1", "ACK {id}", "yes"])
def test_acknowledging_twice_is_answered_politely_and_changes_nothing(
    services: Any, twilio: Any, on_call: Roster, clock: Clock, again: str,
) -> None:
    case_id = open_case(services)
    _reply(twilio, "1")
    taken = case(services, case_id)
    clock.advance(seconds=60)

    assert _reply(twilio, again.format(id=case_id)) == (
        f"Case {case_id} is already yours. Call the patient at +1 617-555-0123 now.")
    after = case(services, case_id)
    assert (after["acknowledged_by"], after["acknowledged_at"]) == (PRIMARY_NAME, taken["acknowledged_at"])
    assert len(events(services, case_id, "acknowledged")) == 1
    assert [s.body for s in services.pager.sent if s.body.startswith("Case")] == []


@pytest.mark.parametrize("late", ["1", "ACK {id}"])
def test_acknowledging_after_someone_else_says_who_took_it(
    services: Any, twilio: Any, on_call: Roster, clock: Clock, late: str,
) -> None:
    start = clock.now
    case_id = open_case(services)
    clock.now = start + timedelta(seconds=300)
    escalation.sweep(services)
    _reply(twilio, "ACK", phone=BACKUP)
    clock.advance(seconds=20)

    assert _reply(twilio, late.format(id=case_id)) == (
        f"Case {case_id} was already taken by {BACKUP_NAME}. Thank you, no need to act.")
    found = case(services, case_id)
    assert found["acknowledged_by"] == BACKUP_NAME
    assert len(events(services, case_id, "acknowledged")) == 1


def test_a_case_can_still_be_taken_after_the_chain_ran_out(
    services: Any, twilio: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    case_id = open_case(services, "urgent")
    clock.now = start + timedelta(seconds=3600)
    escalation.sweep(services)
    assert case(services, case_id)["status"] == "unacknowledged"

    assert _reply(twilio, "1") == _yours(case_id)
    assert case(services, case_id)["status"] == "acknowledged"


def test_an_unknown_case_number_is_named(services: Any, twilio: Any, on_call: Roster) -> None:
    case_id = open_case(services)
    assert _reply(twilio, "ACK 999") == f"There is no case 999. {HOW_TO}"
    assert case(services, case_id)["status"] == "pending"


@pytest.mark.parametrize("text", ["on my way", "12", "who is this?", "", "back pain", "ack ack"])
def test_anything_else_gets_the_how_to(services: Any, twilio: Any, on_call: Roster, text: str) -> None:
    case_id = open_case(services)
    assert _reply(twilio, text) == HOW_TO
    assert case(services, case_id)["status"] == "pending"


def test_a_clinician_with_no_case_is_told_so(services: Any, twilio: Any, on_call: Roster) -> None:
    open_case(services)  # paged to the primary only
    assert _reply(twilio, "1", phone=BACKUP) == f"You have no open case to take. {HOW_TO}"


@pytest.mark.parametrize("text", ["1", "hello", "back pain", "START", "STOP"])
def test_clinician_texts_never_start_a_patient_triage(
    services: Any, twilio: Any, on_call: Roster, text: str,
) -> None:
    reply = _reply(twilio, text)
    assert "How old are you?" not in reply
    assert "911" not in reply
    assert services.records.latest_conversation(PRIMARY) is None


def test_a_clinician_number_is_recognised_in_national_format(
    services: Any, twilio: Any, on_call: Roster,
) -> None:
    case_id = open_case(services)
    assert _reply(twilio, "1", phone="(617) 555-0111") == _yours(case_id)
    assert services.records.latest_conversation(PRIMARY) is None


def test_patients_still_reach_triage(services: Any, twilio: Any, on_call: Roster) -> None:
    replies = twilio.sms("my back hurts", phone=PATIENT)
    assert any("How old are you?" in r for r in replies)


def test_the_supervisor_can_take_a_case_by_text(
    services: Any, twilio: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    case_id = open_case(services)
    clock.now = start + timedelta(seconds=600)
    escalation.sweep(services)
    assert (SUPERVISOR, "sms") in pages(services)

    assert _reply(twilio, "1", phone=SUPERVISOR) == _yours(case_id)
    assert services.records.latest_conversation(SUPERVISOR) is None
