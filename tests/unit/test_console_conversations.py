"""The conversation list and page, with conversations played through the real webhooks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from telehealth.conversations import TriageLine
from tests.unit.console_support import (
    ABANDONED_URGENT,
    CLINICIAN_EMAIL,
    EMERGENCY,
    ROUTINE,
    URGENT_FEVER,
    Staff,
    add_staff,
    audit_actions,
    call,
    play,
    put_on_call,
    use_cheap_hashing,
)

EMERGENCY_PHONE, ROUTINE_PHONE, URGENT_PHONE = "+16175551111", "+16175552222", "+16175553333"
ABANDONED_PHONE, VOICE_PHONE = "+16175554444", "+16175555555"


@pytest.fixture
def staff(client: Any, services: Any, monkeypatch: Any, request: Any) -> Staff:
    """A signed-in clinician; signed in after the patients are played (that moves the clock)."""
    if "line" in request.fixturenames:
        request.getfixturevalue("line")
    use_cheap_hashing(monkeypatch)
    add_staff(services, "admin")
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in(email=CLINICIAN_EMAIL)
    return staff


@pytest.fixture
def line(services: Any, twilio: Any, clock: Any) -> dict[str, int]:
    """Five patients a minute apart: emergency, routine, urgent, abandoned (texts), a call."""
    ids = {}
    for name, messages, phone in (
        ("emergency", EMERGENCY, EMERGENCY_PHONE),
        ("routine", ROUTINE, ROUTINE_PHONE),
        ("urgent", URGENT_FEVER, URGENT_PHONE),
        ("abandoned", ABANDONED_URGENT, ABANDONED_PHONE),
    ):
        play(twilio, messages, phone)
        ids[name] = services.records.latest_conversation(phone)["id"]
        clock.advance(minutes=1)
    clock.advance(minutes=31)
    TriageLine(services).sweep_abandoned()
    call(
        twilio,
        "CA" + "1" * 32,
        VOICE_PHONE,
        [{"Digits": "71"}, {"Digits": "2"}, {"SpeechResult": "Yes it does.", "Confidence": "0.62"}],
    )
    ids["voice"] = services.records.latest_conversation(VOICE_PHONE)["id"]
    return ids


def _listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/console/(\d+)"', html)]


def test_the_list_is_newest_first_with_masked_numbers(staff: Staff, line: dict[str, int]) -> None:
    html = staff.get("/console/").get_data(as_text=True)
    assert _listed(html) == [
        line["voice"],
        line["abandoned"],
        line["urgent"],
        line["routine"],
        line["emergency"],
    ]
    assert "+1 *** *** 1111" in html and "+1 *** *** 5555" in html
    assert EMERGENCY_PHONE not in html and "6175551111" not in html
    assert "5 conversations." in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("disposition=emergency", ["voice", "emergency"]),
        ("disposition=routine", ["routine"]),
        ("disposition=none", []),
        ("channel=voice", ["voice"]),
        ("channel=sms", ["abandoned", "urgent", "routine", "emergency"]),
        ("status=abandoned", ["abandoned"]),
        ("escalation=open", ["voice", "abandoned", "urgent", "emergency"]),
        ("escalation=none", ["routine"]),
        ("last4=3333", ["urgent"]),
        ("last4=9999", []),
        (
            "date_from=2026-11-26&date_to=2026-11-26",
            ["voice", "abandoned", "urgent", "routine", "emergency"],
        ),
        ("date_from=2026-11-27", []),
        ("date_to=2026-11-25", []),
        ("channel=sms&disposition=urgent", ["abandoned", "urgent"]),
    ],
)
def test_filters(staff: Staff, line: dict[str, int], query: str, expected: list[str]) -> None:
    html = staff.get(f"/console/?{query}").get_data(as_text=True)
    assert _listed(html) == [line[name] for name in expected]


def test_a_filter_that_makes_no_sense_is_ignored_and_said(
    staff: Staff, line: dict[str, int]
) -> None:
    html = staff.get("/console/?last4=12&disposition=bogus&date_from=yesterday").get_data(
        as_text=True
    )
    assert (
        "exactly the last 4 digits" in html
        and "Unknown disposition" in html
        and "not a date" in html
    )
    assert len(_listed(html)) == 5


def test_acknowledged_and_paging_escalation_states(
    staff: Staff, line: dict[str, int], services: Any
) -> None:
    from telehealth import escalation

    case = services.records.get_conversation(line["urgent"])["escalation"]["id"]
    escalation.acknowledge(services, case, "+16175550000", "Dr Who")
    assert _listed(staff.get("/console/?escalation=acknowledged").get_data(as_text=True)) == [
        line["urgent"]
    ]
    assert line["urgent"] not in _listed(
        staff.get("/console/?escalation=pending").get_data(as_text=True)
    )


def test_pages_of_25(staff: Staff, services: Any, twilio: Any) -> None:
    for i in range(27):
        twilio.sms("back pain", phone=f"+1617555{i:04d}")
    first = staff.get("/console/").get_data(as_text=True)
    second = staff.get("/console/?page=2").get_data(as_text=True)
    assert len(_listed(first)) == 25 and len(_listed(second)) == 2
    assert "Page 1 of 2" in first and 'href="/console/?page=2"' in first
    assert not set(_listed(first)) & set(_listed(second))
    assert _listed(staff.get("/console/?page=99").get_data(as_text=True)) == _listed(second)


def test_page_links_keep_the_filters(staff: Staff, twilio: Any) -> None:
    for i in range(26):
        twilio.sms("back pain", phone=f"+1617555{i:04d}")
    html = staff.get("/console/?channel=sms").get_data(as_text=True)
    assert 'href="/console/?channel=sms&amp;page=2"' in html


def test_the_conversation_page_reads_as_a_chat(staff: Staff, line: dict[str, int]) -> None:
    html = staff.get(f"/console/{line['emergency']}").get_data(as_text=True)
    assert html.index("My lower back hurts") < html.index("How old are you?") < html.index(">58<")
    assert 'class="msg patient"' in html and 'class="msg line"' in html
    assert "answering: chest pain or short of breath" in html
    assert f'href="tel:{EMERGENCY_PHONE}"' in html  # the clinician calls back from here
    assert "Protocol version" in html and "2026." in html


def test_a_voice_turn_shows_the_digits_or_the_speech_and_its_confidence(
    staff: Staff, line: dict[str, int]
) -> None:
    html = staff.get(f"/console/{line['voice']}").get_data(as_text=True)
    assert "pressed 71" in html and "pressed 2" in html
    assert "said “Yes it does.” (confidence 62%)" in html
    assert "voice call" in html


def test_red_flags_in_plain_words_with_the_rule_and_its_source(
    staff: Staff, line: dict[str, int], services: Any
) -> None:
    html = staff.get(f"/console/{line['voice']}").get_data(as_text=True)
    rule = services.protocol.rule("aortic_pain")
    assert "tearing pain or pain into belly" in html
    assert "aortic_pain" in html and "decided the outcome" in html
    assert f"Source: {rule.source}" in html


def test_an_abandoned_conversation_shows_the_rule_its_answers_met(
    staff: Staff, line: dict[str, int]
) -> None:
    html = staff.get(f"/console/{line['abandoned']}").get_data(as_text=True)
    assert "abandoned" in html and "fever_alone" in html and "patient stopped replying" in html


def test_the_escalation_timeline_shows_pages_delivery_and_who_took_it(
    staff: Staff, services: Any, twilio: Any, clock: Any
) -> None:
    from telehealth import escalation
    from telehealth.alerts import Alerts

    put_on_call(services, clock)
    play(twilio, EMERGENCY, EMERGENCY_PHONE)
    conversation = services.records.latest_conversation(EMERGENCY_PHONE)
    case = conversation["escalation"]["id"]
    first = Alerts(services.records).for_escalation(case)[0]
    escalation.delivery_status(services, first["id"], "delivered", None)
    clock.advance(minutes=3)
    escalation.acknowledge(services, case, "+16175550111", "Dana Prime")
    html = staff.get(f"/console/{conversation['id']}").get_data(as_text=True)
    assert "Page sent to Dana Prime by sms" in html
    assert "Page to Dana Prime by sms: delivered" in html
    assert "Taken by Dana Prime" in html
    assert "by Dana Prime at 26 Nov 2026 12:03, 3 min after the flag" in html
    assert 'class="badge b-alert-delivered">delivered' in html


def test_an_unknown_conversation_is_404(staff: Staff) -> None:
    assert staff.get("/console/424242").status_code == 404


def test_every_view_of_a_conversation_is_audited_without_patient_data(
    staff: Staff, line: dict[str, int], services: Any
) -> None:
    staff.get(f"/console/{line['emergency']}")
    staff.get("/console/?last4=1111")
    entries = audit_actions(services)
    view = [e for e in entries if e[1] == "conversation_view"]
    assert view == [(CLINICIAN_EMAIL, "conversation_view", f"conversation:{line['emergency']}", {})]
    listing = [e for e in entries if e[1] == "conversation_list"][-1]
    assert listing[3]["detail_filters"] == {"phone_search": True}
    assert "1111" not in repr(entries)


def test_a_clinician_adds_a_note_and_an_outcome(
    staff: Staff, line: dict[str, int], services: Any
) -> None:
    path = f"/console/{line['urgent']}"
    response = staff.post(
        f"{path}/notes", {"outcome": "sent_to_er", "text": "Called back at 12:40.\nSent to ER."}
    )
    assert response.status_code == 302 and response.headers["Location"] == f"{path}#notes"
    html = staff.get(path).get_data(as_text=True)
    assert "Called back, sent to ER" in html and "Called back at 12:40.\nSent to ER." in html
    assert "Cy Clinician" in html
    notes = [e for e in audit_actions(services) if e[1] == "note_added"]
    assert (
        notes
        and notes[0][2] == f"conversation:{line['urgent']}"
        and "Sent to ER" not in repr(notes)
    )


def test_a_note_needs_an_outcome(staff: Staff, line: dict[str, int]) -> None:
    path = f"/console/{line['urgent']}"
    staff.post(f"{path}/notes", {"outcome": "", "text": "something"})
    html = staff.get(path).get_data(as_text=True)
    assert "The note was not saved: choose an outcome." in html and "No notes yet." in html


def test_everything_a_patient_typed_is_escaped(staff: Staff, twilio: Any, services: Any) -> None:
    twilio.sms("<script>alert(1)</script><img src=x onerror=alert(2)>", phone=EMERGENCY_PHONE)
    conversation_id = services.records.latest_conversation(EMERGENCY_PHONE)["id"]
    html = staff.get(f"/console/{conversation_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_note_is_escaped_too(staff: Staff, line: dict[str, int]) -> None:
    path = f"/console/{line['routine']}"
    staff.post(f"{path}/notes", {"outcome": "note_only", "text": '<b onclick="x()">bold</b>'})
    html = staff.get(path).get_data(as_text=True)
    assert "<b onclick" not in html and "&lt;b onclick=" in html
