"""Alerts: the exactly-once store, delivery status callbacks and the voice alert call."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import pytest

from telehealth import escalation
from telehealth.alerts import NOTICE_STEP, Alerts, Target
from telehealth.roster import Roster
from tests.conftest import (
    BACKUP, BACKUP_NAME, PRIMARY, PRIMARY_NAME, SUPERVISOR, Clock, RecordingJobs,
)
from tests.unit.escalation_support import (
    SMS, VOICE, case, events, one_alert_per_step_and_recipient, open_case, pages,
)

STALE = timedelta(seconds=30)
DR_A = Target(PRIMARY, PRIMARY_NAME, SMS, 1)
DR_A_CALL = Target(PRIMARY, PRIMARY_NAME, VOICE, 1)
DR_B = Target(BACKUP, BACKUP_NAME, SMS, 2)


# --- the store -------------------------------------------------------------------------------


def _escalation(services: Any, at: datetime, phone: str = "+16175550123") -> int:
    conversation_id = services.records.start_conversation(channel="sms", phone=phone, protocol_version="test",
                                                          at=at)
    escalation_id, _ = services.records.create_escalation(
        conversation_id, level="emergency", reason="disposition", summary="58y: chest pain",
        chain=services.chains["emergency"], at=at)
    return escalation_id


@pytest.fixture
def store(services: Any) -> Alerts:
    return Alerts(services.records)


def _step0(store: Alerts, escalation_id: int, now: datetime, targets: list[Target] | None = None) -> list[int]:
    ids = store.claim_step(escalation_id, 0, 1, now + timedelta(seconds=120), now, targets or [DR_A, DR_A_CALL],
                           "EMERGENCY back pain")
    assert ids is not None
    return ids


def test_a_step_is_claimed_once(services: Any, store: Alerts, clock: Clock) -> None:
    escalation_id = _escalation(services, clock.now)
    ids = _step0(store, escalation_id, clock.now)

    assert store.claim_step(escalation_id, 0, 1, None, clock.now, [DR_A], "again") is None
    assert [(a["step"], a["recipient"], a["channel"], a["status"]) for a in store.for_escalation(escalation_id)] == [
        (0, PRIMARY, SMS, "pending"), (0, PRIMARY, VOICE, "pending")]
    assert len(ids) == 2
    found = services.records.get_escalation(escalation_id)
    assert (found["next_step"], found["next_due_at"]) == (1, (clock.now + timedelta(seconds=120)).isoformat())


@pytest.mark.parametrize(("step", "seconds_later"), [(1, 119), (0, 200), (2, 200)])
def test_a_step_that_is_not_due_or_not_next_is_not_claimed(
    services: Any, store: Alerts, clock: Clock, step: int, seconds_later: int,
) -> None:
    escalation_id = _escalation(services, clock.now)
    _step0(store, escalation_id, clock.now)
    later = clock.now + timedelta(seconds=seconds_later)
    assert store.claim_step(escalation_id, step, step + 1, None, later, [DR_B], "body") is None
    assert len(store.for_escalation(escalation_id)) == 2


def test_the_last_claim_marks_the_case_unacknowledged(services: Any, store: Alerts, clock: Clock) -> None:
    escalation_id = _escalation(services, clock.now)
    assert store.claim_step(escalation_id, 0, 0, None, clock.now, [], "", finished=True) == []
    found = services.records.get_escalation(escalation_id)
    assert (found["status"], found["next_due_at"]) == ("unacknowledged", None)
    assert store.due_escalations(clock.now + timedelta(days=1)) == []


def test_an_alert_is_claimed_by_one_sender_until_its_claim_goes_stale(
    services: Any, store: Alerts, clock: Clock,
) -> None:
    sms, _ = _step0(store, _escalation(services, clock.now), clock.now)

    first = store.claim(sms, clock.now, STALE)
    assert first is not None
    assert (first.reclaimed, first.alert["attempts"], first.alert["status"]) == (False, 1, "claimed")
    assert store.claim(sms, clock.now + STALE - timedelta(seconds=1), STALE) is None
    second = store.claim(sms, clock.now + STALE, STALE)
    assert second is not None and (second.reclaimed, second.alert["attempts"]) == (True, 2)
    assert store.claim(sms, clock.now + STALE, STALE) is None  # the new claim is fresh


def test_a_released_alert_can_be_claimed_again(services: Any, store: Alerts, clock: Clock) -> None:
    sms, _ = _step0(store, _escalation(services, clock.now), clock.now)
    store.claim(sms, clock.now, STALE)
    store.release(sms, clock.now)
    again = store.claim(sms, clock.now, STALE)
    assert again is not None and (again.reclaimed, again.alert["attempts"]) == (False, 2)


@pytest.mark.parametrize("status", ["queued", "delivered", "failed", "canceled"])
def test_an_alert_past_claimed_is_never_claimed(services: Any, store: Alerts, clock: Clock, status: str) -> None:
    sms, _ = _step0(store, _escalation(services, clock.now), clock.now)
    store.claim(sms, clock.now, STALE)
    assert store.mark(sms, status, clock.now)
    assert store.claim(sms, clock.now + timedelta(hours=1), STALE) is None
    assert sms not in store.stuck(clock.now + timedelta(hours=1), pending_for=STALE, claimed_for=STALE)


@pytest.mark.parametrize(("statuses", "final", "moved"), [
    (["queued", "sent", "delivered", "sent"], "delivered", [True, True, True, False]),
    (["queued", "delivered", "sent", "queued"], "delivered", [True, True, False, False]),
    (["queued", "initiated", "ringing", "in-progress", "completed", "ringing"], "completed",
     [True, True, True, True, True, False]),
    (["queued", "undelivered", "delivered"], "undelivered", [True, True, False]),
    (["queued", "sent", "receiving"], "sent", [True, True, False]),  # a status we do not know
])
def test_statuses_only_move_forward(
    services: Any, store: Alerts, clock: Clock, statuses: list[str], final: str, moved: list[bool],
) -> None:
    sms, _ = _step0(store, _escalation(services, clock.now), clock.now)
    store.claim(sms, clock.now, STALE)
    assert [store.mark(sms, s, clock.now) for s in statuses] == moved
    assert store.get(sms)["status"] == final


def test_the_carriers_id_is_kept_when_a_callback_overtook_the_sender(
    services: Any, store: Alerts, clock: Clock,
) -> None:
    sms, _ = _step0(store, _escalation(services, clock.now), clock.now)
    store.claim(sms, clock.now, STALE)
    assert store.mark(sms, "delivered", clock.now)  # Twilio's callback arrived first
    assert store.mark(sms, "queued", clock.now, sid="SM" + "1" * 32) is False
    alert = store.get(sms)
    assert (alert["status"], alert["twilio_sid"]) == ("delivered", "SM" + "1" * 32)


def test_stuck_alerts_are_those_never_sent_or_claimed_by_a_dead_sender(
    services: Any, store: Alerts, clock: Clock,
) -> None:
    sms, voice = _step0(store, _escalation(services, clock.now), clock.now)
    store.claim(voice, clock.now, STALE)
    assert store.stuck(clock.now, pending_for=timedelta(seconds=15), claimed_for=STALE) == []
    assert store.stuck(clock.now + timedelta(seconds=15), pending_for=timedelta(seconds=15),
                       claimed_for=STALE) == [sms]
    assert store.stuck(clock.now + STALE, pending_for=timedelta(seconds=15), claimed_for=STALE) == [sms, voice]


def test_a_notice_and_a_fallback_are_added_once(services: Any, store: Alerts, clock: Clock) -> None:
    escalation_id = _escalation(services, clock.now)
    _step0(store, escalation_id, clock.now, [DR_A])
    assert len(store.add_notices(escalation_id, [DR_B], "Case taken", clock.now)) == 1
    assert store.add_notices(escalation_id, [DR_B], "Case taken", clock.now) == []
    assert store.add_fallback(escalation_id, 0, DR_A_CALL, "body", clock.now) is not None
    assert store.add_fallback(escalation_id, 0, DR_A_CALL, "body", clock.now) is None
    kinds = [(a["step"], a["recipient"], a["channel"], a["kind"]) for a in store.for_escalation(escalation_id)]
    assert kinds == [(0, PRIMARY, SMS, "page"), (NOTICE_STEP, BACKUP, SMS, "notice"), (0, PRIMARY, VOICE, "page")]


@pytest.mark.parametrize(("failed_step", "hurried"), [(0, True), (1, False)])
def test_hurry_only_brings_forward_the_step_after_the_failed_one(
    services: Any, store: Alerts, clock: Clock, failed_step: int, hurried: bool,
) -> None:
    escalation_id = _escalation(services, clock.now)
    _step0(store, escalation_id, clock.now)
    later = clock.now + timedelta(seconds=10)
    assert store.hurry(escalation_id, failed_step, later) is hurried
    due = services.records.get_escalation(escalation_id)["next_due_at"]
    assert due == (later if hurried else clock.now + timedelta(seconds=120)).isoformat()


def test_a_case_is_acknowledged_once_even_after_the_chain_ended(
    services: Any, store: Alerts, clock: Clock,
) -> None:
    escalation_id = _escalation(services, clock.now)
    store.claim_step(escalation_id, 0, 0, None, clock.now, [], "", finished=True)
    assert store.acknowledge(escalation_id, PRIMARY_NAME, clock.now) is True
    assert store.acknowledge(escalation_id, BACKUP_NAME, clock.now) is False
    assert store.hurry(escalation_id, -1, clock.now) is False
    found = services.records.get_escalation(escalation_id)
    assert (found["status"], found["acknowledged_by"]) == ("acknowledged", PRIMARY_NAME)
    assert [e["detail"] for e in found["events"] if e["kind"] == "acknowledged"] == [{"by": PRIMARY_NAME}]


def test_cases_paged_to_a_number_newest_first(services: Any, store: Alerts, clock: Clock) -> None:
    older = _escalation(services, clock.now)
    _step0(store, older, clock.now)
    newer = _escalation(services, clock.now + timedelta(seconds=5), phone="+16175550177")
    _step0(store, newer, clock.now + timedelta(seconds=5), [DR_A, DR_A_CALL])
    told = _escalation(services, clock.now + timedelta(seconds=9), phone="+16175550178")
    store.add_notices(told, [DR_A], "Case taken", clock.now)  # a notice is not a page

    assert [c["id"] for c in store.open_cases_for(PRIMARY)] == [newer, older]
    assert store.open_cases_for(BACKUP) == []


# --- delivery status callbacks ---------------------------------------------------------------


def _status(twilio: Any, alert_id: int, channel: str, status: str, error: str | None = None,
            sign: bool = True) -> int:
    params = {("MessageStatus" if channel == SMS else "CallStatus"): status,
              ("MessageSid" if channel == SMS else "CallSid"): "X" * 34}
    if error:
        params["ErrorCode"] = error
    return twilio.post(f"/twilio/alerts/status?alert={alert_id}", params, sign=sign).status_code


def _pages_of(services: Any, escalation_id: int) -> dict[tuple[int, str, str], dict[str, Any]]:
    alerts = one_alert_per_step_and_recipient(services, escalation_id)
    return {(a["step"], a["recipient"], a["channel"]): a for a in alerts}


@pytest.mark.parametrize(("channel", "statuses", "recorded"), [
    (SMS, ["sent", "delivered", "sent"], ["sent", "delivered"]),  # a late `sent` changes nothing
    (SMS, ["delivered", "sent", "queued"], ["delivered"]),
    (SMS, ["sent", "read"], ["sent", "read"]),
    (VOICE, ["initiated", "ringing", "in-progress", "completed", "ringing"],
     ["initiated", "ringing", "in-progress", "completed"]),
])
def test_delivery_statuses_are_stored_in_order_and_put_on_the_timeline(
    twilio: Any, services: Any, on_call: Roster, clock: Clock, channel: str, statuses: list[str],
    recorded: list[str],
) -> None:
    escalation_id = open_case(services)
    alert = _pages_of(services, escalation_id)[(0, PRIMARY, channel)]
    for status in statuses:
        clock.advance(seconds=1)
        assert _status(twilio, alert["id"], channel, status) == 204

    assert Alerts(services.records).get(alert["id"])["status"] == recorded[-1]
    stored = [e["detail"] for e in events(services, escalation_id, "delivery")]
    assert stored == [{"alert": alert["id"], "to": PRIMARY_NAME, "channel": channel, "status": s} for s in recorded]
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]  # delivered pages do not move the chain


def test_an_unsigned_status_callback_is_refused(twilio: Any, services: Any, on_call: Roster) -> None:
    escalation_id = open_case(services)
    alert = _pages_of(services, escalation_id)[(0, PRIMARY, SMS)]
    assert _status(twilio, alert["id"], SMS, "failed", sign=False) == 403
    assert Alerts(services.records).get(alert["id"])["status"] == "queued"
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]


@pytest.mark.parametrize(("channel", "status", "error"), [
    (SMS, "failed", "30008"), (SMS, "undelivered", "30003"), (VOICE, "busy", None), (VOICE, "no-answer", None),
    (VOICE, "failed", None),
])
def test_a_failed_page_moves_the_chain_on_at_once(
    twilio: Any, services: Any, on_call: Roster, clock: Clock, channel: str, status: str, error: str | None,
) -> None:
    escalation_id = open_case(services)
    alert = _pages_of(services, escalation_id)[(0, PRIMARY, channel)]
    clock.advance(seconds=40)

    assert _status(twilio, alert["id"], channel, status, error) == 204
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE), (PRIMARY, VOICE)]  # step 1, 80 s early
    assert services.pager.sent[-1].at == clock.now
    assert [e["detail"]["step"] for e in events(services, escalation_id, "step")] == [0, 1]
    failed = [e["detail"] for e in events(services, escalation_id, "delivery")]
    assert failed == [{"alert": alert["id"], "to": PRIMARY_NAME, "channel": channel, "status": status,
                       **({"error": error} if error else {})}]


def test_a_failure_reported_to_the_sweep_pages_the_next_tier_without_waiting(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    clock.now = start + timedelta(seconds=120)
    escalation.sweep(services)
    jobs = RecordingJobs(services)
    services.jobs = jobs
    voice = _pages_of(services, escalation_id)[(1, PRIMARY, VOICE)]
    clock.now = start + timedelta(seconds=150)

    assert _status(twilio, voice["id"], VOICE, "no-answer") == 204
    assert jobs.names() == ["run_due"]
    jobs.queued.clear()  # even if that job is lost, the database says the backup is due now
    escalation.sweep(services)
    jobs.drain()
    assert pages(services)[-2:] == [(BACKUP, SMS), (BACKUP, VOICE)]
    assert services.pager.sent[-1].at == start + timedelta(seconds=150)


def test_two_failed_pages_of_one_step_move_the_chain_on_once(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    clock.now = start + timedelta(seconds=300)
    escalation.sweep(services)
    backup = _pages_of(services, escalation_id)
    clock.advance(seconds=30)

    _status(twilio, backup[(2, BACKUP, SMS)]["id"], SMS, "undelivered", "30005")
    _status(twilio, backup[(2, BACKUP, VOICE)]["id"], VOICE, "busy")
    assert pages(services)[-2:] == [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]
    assert pages(services).count((SUPERVISOR, SMS)) == 1
    assert case(services, escalation_id)["next_step"] == 4
    clock.now = start + timedelta(seconds=899)
    escalation.sweep(services)
    assert len(services.pager.sent) == 7  # round 2 keeps its own time


def test_a_late_failure_of_an_old_step_skips_nothing(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    clock.now = start + timedelta(seconds=120)
    escalation.sweep(services)
    first_sms = _pages_of(services, escalation_id)[(0, PRIMARY, SMS)]
    clock.now = start + timedelta(seconds=200)

    _status(twilio, first_sms["id"], SMS, "undelivered", "30003")
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE), (PRIMARY, VOICE)]
    assert case(services, escalation_id)["next_due_at"] == (start + timedelta(seconds=300)).isoformat()


def test_an_sms_opt_out_reported_by_twilio_calls_the_clinician_and_flags_the_roster(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services, "urgent")
    assert pages(services) == [(PRIMARY, SMS)]
    sms = _pages_of(services, escalation_id)[(0, PRIMARY, SMS)]
    clock.advance(seconds=5)

    assert _status(twilio, sms["id"], SMS, "undelivered", "21610") == 204
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]
    assert on_call.clinician_by_phone(PRIMARY)["sms_opted_out"] is True
    assert on_call.clinician_by_phone(BACKUP)["sms_opted_out"] is False
    assert [e["detail"] for e in events(services, escalation_id, "sms_opted_out")] == [
        {"to": PRIMARY_NAME, "fallback": "voice"}]
    assert case(services, escalation_id)["next_step"] == 1  # the voice call, not a skipped step

    clock.now = start + timedelta(seconds=1800)  # round 2 opens with an SMS to the primary
    escalation.sweep(services)
    assert pages(services)[-1] == (PRIMARY, VOICE)
    assert pages(services).count((PRIMARY, SMS)) == 1


def test_an_sms_opt_out_in_a_step_that_also_calls_does_not_call_twice(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    escalation_id = open_case(services)
    sms = _pages_of(services, escalation_id)[(0, PRIMARY, SMS)]
    _status(twilio, sms["id"], SMS, "undelivered", "21610")
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]
    assert on_call.clinician_by_phone(PRIMARY)["sms_opted_out"] is True


def test_a_status_for_an_unknown_alert_changes_nothing(twilio: Any, services: Any, on_call: Roster) -> None:
    escalation_id = open_case(services)
    assert _status(twilio, 999, SMS, "failed") == 204
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]
    assert events(services, escalation_id, "delivery") == []


# --- the voice alert call --------------------------------------------------------------------


def _twiml(response: Any) -> ElementTree.Element:
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    return ElementTree.fromstring(response.data)


def test_the_alert_call_reads_the_summary_and_asks_for_1(twilio: Any, services: Any, on_call: Roster) -> None:
    escalation_id = open_case(services)
    voice = _pages_of(services, escalation_id)[(0, PRIMARY, VOICE)]

    root = _twiml(twilio.post(f"/twilio/alerts/call?alert={voice['id']}", {"CallSid": "CA" + "1" * 32}))
    gather = root.find("./Gather")
    assert gather is not None
    assert (gather.get("numDigits"), gather.get("input")) == ("1", "dtmf")
    assert gather.get("action") == f"/twilio/alerts/call/answer?alert={voice['id']}"
    said = gather.findtext("./Say") or ""
    assert f"EMERGENCY back pain {escalation_id}: 58y: chest pain or short of breath." in said
    assert "Call +1 617-555-0123." in said
    assert said.endswith("Press 1 to take this case.")
    assert "Reply 1" not in said
    assert root.find("./Hangup") is not None


def test_an_alert_call_for_an_unknown_alert_says_so(twilio: Any, services: Any, on_call: Roster) -> None:
    root = _twiml(twilio.post("/twilio/alerts/call?alert=999", {"CallSid": "CA" + "1" * 32}))
    assert root.find("./Gather") is None
    assert "no longer open" in (root.findtext("./Say") or "")


def test_an_unsigned_alert_call_is_refused(twilio: Any, services: Any, on_call: Roster) -> None:
    escalation_id = open_case(services)
    voice = _pages_of(services, escalation_id)[(0, PRIMARY, VOICE)]
    response = twilio.post(f"/twilio/alerts/call/answer?alert={voice['id']}", {"Digits": "1"}, sign=False)
    assert response.status_code == 403
    assert case(services, escalation_id)["status"] == "pending"


def test_pressing_1_on_the_alert_call_takes_the_case(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    clock.now = start + timedelta(seconds=300)
    escalation.sweep(services)  # the backup has been paged too
    backup_call = _pages_of(services, escalation_id)[(2, BACKUP, VOICE)]
    clock.advance(seconds=20)

    root = _twiml(twilio.post(f"/twilio/alerts/call/answer?alert={backup_call['id']}", {"Digits": "1"}))
    assert root.findtext("./Say") == (f"Thank you, case {escalation_id} is yours. "
                                      "Call the patient at +1 617-555-0123 now.")
    found = case(services, escalation_id)
    assert (found["status"], found["acknowledged_by"], found["acknowledged_at"]) == (
        "acknowledged", BACKUP_NAME, clock.now.isoformat())
    notice = services.pager.to(PRIMARY, SMS)[-1].body
    assert notice == f"Case {escalation_id} was taken by {BACKUP_NAME}. No need to act."

    sent = len(services.pager.sent)
    clock.now = start + timedelta(seconds=3600)
    escalation.sweep(services)
    assert len(services.pager.sent) == sent


@pytest.mark.parametrize("digits", ["2", "", "#", "11"])
def test_other_keys_on_the_alert_call_take_nothing(
    twilio: Any, services: Any, on_call: Roster, digits: str,
) -> None:
    escalation_id = open_case(services)
    voice = _pages_of(services, escalation_id)[(0, PRIMARY, VOICE)]
    root = _twiml(twilio.post(f"/twilio/alerts/call/answer?alert={voice['id']}", {"Digits": digits}))
    assert "not taken" in (root.findtext("./Say") or "")
    assert case(services, escalation_id)["status"] == "pending"


def test_pressing_1_after_someone_else_took_it_says_who(
    twilio: Any, services: Any, on_call: Roster,
) -> None:
    escalation_id = open_case(services)
    voice = _pages_of(services, escalation_id)[(0, PRIMARY, VOICE)]
    assert escalation.acknowledge(services, escalation_id, SUPERVISOR, "supervisor") == "taken"

    root = _twiml(twilio.post(f"/twilio/alerts/call/answer?alert={voice['id']}", {"Digits": "1"}))
    assert root.findtext("./Say") == (f"Case {escalation_id} was already taken by supervisor. "
                                      "Thank you, no need to act.")
    assert case(services, escalation_id)["acknowledged_by"] == "supervisor"
