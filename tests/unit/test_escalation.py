"""The escalation chain run against a roster, a FakePager and a clock the tests move by hand.

What is asserted is what the people involved would see: the pages in the FakePager (who, how,
when and what they say) and the escalation's timeline.
"""
from __future__ import annotations

import re
import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from telehealth import chain as chain_module
from telehealth import escalation
from telehealth.alerts import Alerts
from telehealth.escalation import CLAIM_STALE_AFTER, MAX_ATTEMPTS, NOBODY, PENDING_STUCK_AFTER
from telehealth.jobs import InlineJobs
from telehealth.paging import ConsolePager, FakePager, PagingFailed, RecipientOptedOut
from telehealth.roster import Roster
from telehealth.settings import ROOT
from telehealth.triage import gsm
from telehealth.triage import protocol as protocol_module
from telehealth.worker import sweep_once
from tests.conftest import (
    BACKUP, BACKUP_NAME, PATIENT, PRIMARY, PRIMARY_NAME, SUPERVISOR, Clock, RecordingJobs, api_get,
)
from tests.unit.escalation_support import (
    FIRST_WORDS, SMS, VOICE, at, case, events, one_alert_per_step_and_recipient, open_case, pages, play_emergency,
)

URGENT_ANSWERS = ("back pain", "33", *["no"] * 9, "yes", "no", "no", "no")  # fever alone

# (seconds after the start, the pages that go out then) for flows/escalation.yaml
EMERGENCY_TIMELINE = [
    (0, [(PRIMARY, SMS), (PRIMARY, VOICE)]),
    (120, [(PRIMARY, VOICE)]),
    (300, [(BACKUP, SMS), (BACKUP, VOICE)]),
    (600, [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]),
    (900, [(PRIMARY, SMS), (PRIMARY, VOICE)]),  # round 2
    (1020, [(PRIMARY, VOICE)]),
    (1200, [(BACKUP, SMS), (BACKUP, VOICE)]),
    (1500, [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]),
    (1800, [(PRIMARY, SMS), (PRIMARY, VOICE)]),  # round 3
    (1920, [(PRIMARY, VOICE)]),
    (2100, [(BACKUP, SMS), (BACKUP, VOICE)]),
    (2400, [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]),
]
URGENT_TIMELINE = [
    (0, [(PRIMARY, SMS)]),
    (300, [(PRIMARY, VOICE)]),
    (600, [(BACKUP, SMS)]),
    (1200, [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]),
    (1800, [(PRIMARY, SMS)]),  # round 2
    (2100, [(PRIMARY, VOICE)]),
    (2400, [(BACKUP, SMS)]),
    (3000, [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]),
]
CHAIN_ENDS = {"emergency": 2700, "urgent": 3600}


# --- the chain, step by step -------------------------------------------------------------


def test_an_emergency_text_pages_the_primary_by_sms_and_voice_at_once(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    escalation_id = play_emergency(twilio, services)

    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]
    sms, call = services.pager.sent
    assert sms.at == call.at == clock.now
    assert sms.body == (f"EMERGENCY back pain {escalation_id}: 58y: chest pain or short of breath. "
                        "Call +1 617-555-0123. Reply 1 to take it.")
    assert gsm.fits_one_segment(sms.body)
    sms_alert, call_alert = one_alert_per_step_and_recipient(services, escalation_id)
    assert call.body == f"http://localhost/twilio/alerts/call?alert={call_alert['id']}"
    assert sms.status_callback == f"http://localhost/twilio/alerts/status?alert={sms_alert['id']}"
    assert call.status_callback == f"http://localhost/twilio/alerts/status?alert={call_alert['id']}"


def test_the_alert_carries_no_transcript(twilio: Any, services: Any, on_call: Roster) -> None:
    play_emergency(twilio, services)

    body = services.pager.to(PRIMARY, SMS)[0].body
    for answer in (FIRST_WORDS, "sofa", "Sunday", "yes"):
        assert answer not in body
    transcript = [t["text"] for t in services.records.latest_conversation(PATIENT)["turns"]]
    assert not any(line in body for line in transcript if len(line) > 3)


@pytest.mark.parametrize(("level", "timeline"), [("emergency", EMERGENCY_TIMELINE), ("urgent", URGENT_TIMELINE)])
def test_each_step_runs_at_its_time_and_never_early(
    twilio: Any, services: Any, on_call: Roster, clock: Clock, level: str,
    timeline: list[tuple[int, list[tuple[str, str]]]],
) -> None:
    start = clock.now
    escalation_id = play_emergency(twilio, services) if level == "emergency" else open_case(services, level)
    assert pages(services) == timeline[0][1]

    for seconds, expected in timeline[1:]:
        before = len(services.pager.sent)
        at(clock, start, seconds - 1)
        escalation.sweep(services)
        assert pages(services)[before:] == [], f"something ran before {seconds}s"
        at(clock, start, seconds)
        escalation.sweep(services)
        assert pages(services)[before:] == expected, f"at {seconds}s"
        assert all(s.at == clock.now for s in services.pager.sent[before:])

    assert case(services, escalation_id)["status"] == "pending"
    assert len(one_alert_per_step_and_recipient(services, escalation_id)) == sum(len(p) for _, p in timeline)


@pytest.mark.parametrize("level", ["emergency", "urgent"])
def test_after_the_last_round_the_case_is_unacknowledged_never_dropped(
    services: Any, on_call: Roster, clock: Clock, level: str,
) -> None:
    start = clock.now
    escalation_id = open_case(services, level)
    at(clock, start, CHAIN_ENDS[level] - 1)
    escalation.sweep(services)
    assert case(services, escalation_id)["status"] == "pending"

    at(clock, start, CHAIN_ENDS[level])
    escalation.sweep(services)
    found = case(services, escalation_id)
    assert found["status"] == "unacknowledged"
    assert found["next_due_at"] is None
    rounds = chain_module.Chain(found["chain"]).rounds
    assert [e["detail"] for e in events(services, escalation_id, "unacknowledged")] == [{"after_rounds": rounds}]

    sent = len(services.pager.sent)
    at(clock, start, CHAIN_ENDS[level] + 3600)
    escalation.sweep(services)
    escalation.run_due(services, escalation_id)
    assert len(services.pager.sent) == sent
    assert len(events(services, escalation_id, "unacknowledged")) == 1


def test_every_step_is_on_the_timeline(services: Any, on_call: Roster, clock: Clock) -> None:
    start = clock.now
    escalation_id = open_case(services)
    at(clock, start, 300)
    escalation.sweep(services)

    steps = [e["detail"] for e in events(services, escalation_id, "step")]
    assert [(s["step"], s["round"], s["to"]) for s in steps] == [(0, 1, "primary"), (1, 1, "primary"),
                                                                  (2, 1, "backup")]
    assert steps[2]["pages"] == [{"name": BACKUP_NAME, "channel": SMS}, {"name": BACKUP_NAME, "channel": VOICE}]
    sent = [(e["detail"]["to"], e["detail"]["channel"]) for e in events(services, escalation_id, "alert_sent")]
    assert sent == [(PRIMARY_NAME, SMS), (PRIMARY_NAME, VOICE), (PRIMARY_NAME, VOICE),
                    (BACKUP_NAME, SMS), (BACKUP_NAME, VOICE)]


@pytest.mark.parametrize("again", ["sweep", "run_due"])
def test_a_step_already_run_is_not_run_again(
    services: Any, on_call: Roster, clock: Clock, again: str,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    for seconds in (0, 120, 300):
        at(clock, start, seconds)
        for _ in range(3):
            if again == "sweep":
                escalation.sweep(services)
            else:
                escalation.run_due(services, escalation_id)

    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE), (PRIMARY, VOICE), (BACKUP, SMS), (BACKUP, VOICE)]
    assert len(one_alert_per_step_and_recipient(services, escalation_id)) == 5


def test_steps_missed_during_an_outage_all_run_at_once_in_order(
    services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    at(clock, start, 700)  # nothing ran at 120, 300 or 600
    escalation.sweep(services)

    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE), (PRIMARY, VOICE), (BACKUP, SMS), (BACKUP, VOICE),
                               (SUPERVISOR, SMS), (SUPERVISOR, VOICE)]
    assert case(services, escalation_id)["next_step"] == 4


def test_each_step_schedules_the_next_one_as_a_fast_path(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    jobs.run_next()
    assert jobs.scheduled == [(start + timedelta(seconds=120), escalation.RUN_DUE_JOB, (escalation_id,))]


def test_the_worker_sweep_runs_due_steps_and_escalates_an_abandoned_urgent_chat(
    twilio: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    start = clock.now
    open_case(services)
    for answer in URGENT_ANSWERS[:12]:  # ... fever: yes, then the patient stops replying
        twilio.sms(answer, phone="+16175550177")
    at(clock, start, services.settings.sms_session_timeout_minutes * 60 + 1)

    sweep_once(services)
    abandoned = services.records.latest_conversation("+16175550177")
    assert (abandoned["status"], abandoned["disposition"]) == ("abandoned", "urgent")
    assert case(services, abandoned["escalation"]["id"])["reason"] == "abandoned"
    bodies = [s.body for s in services.pager.to(PRIMARY, SMS)]
    assert bodies[-1].startswith(f"URGENT back pain {abandoned['escalation']['id']}: 33y: fever. "
                                 "Patient stopped replying. Call +1 617-555-0177.")
    assert (BACKUP, SMS) in pages(services)  # the first case's steps ran as well


def test_the_chain_is_copied_when_the_case_starts(services: Any, on_call: Roster, clock: Clock) -> None:
    start = clock.now
    escalation_id = open_case(services)
    services.chains = {level: {**snapshot, "steps": [{"after_seconds": 0, "to": "supervisor", "via": ["sms"]},
                                                     {"after_seconds": 10, "to": "supervisor", "via": ["sms"]}]}
                       for level, snapshot in services.chains.items()}
    at(clock, start, 120)
    escalation.sweep(services)

    assert pages(services)[-1] == (PRIMARY, VOICE)  # the chain in flight, not the edited one


def test_a_conversation_is_escalated_once(services: Any, on_call: Roster) -> None:
    conversation_id = services.records.start_conversation(channel="sms", phone=PATIENT, protocol_version="test")
    first = escalation.open_escalation(services, conversation_id, level="emergency", reason="disposition",
                                       summary="58y: chest pain or short of breath")
    again = escalation.open_escalation(services, conversation_id, level="emergency", reason="disposition",
                                       summary="58y: chest pain or short of breath")
    assert first == again
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]
    assert len(events(services, first, "started")) == 1


# --- the alert text --------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "summary", "reason", "expected"), [
    ("emergency", "58y: chest pain or short of breath", "disposition",
     "EMERGENCY back pain 4821: 58y: chest pain or short of breath. Call +1 617-555-0123. Reply 1 to take it."),
    ("urgent", "62y: fever + IV drug use", "disposition",
     "URGENT back pain 4821: 62y: fever + IV drug use. Call +1 617-555-0123. Reply 1 to take it."),
    ("urgent", "40y: new bladder problem", "abandoned",
     "URGENT back pain 4821: 40y: new bladder problem. Patient stopped replying. Call +1 617-555-0123. "
     "Reply 1 to take it."),
])
def test_alert_text_fits_one_gsm7_segment(level: str, summary: str, reason: str, expected: str) -> None:
    text = escalation.alert_text({"id": 4821, "level": level, "summary": summary, "reason": reason}, PATIENT)
    assert text == expected
    assert gsm.fits_one_segment(text)


def test_a_long_summary_keeps_every_red_flag() -> None:
    summary = ("62y: fever + IV drug use + spine procedure, weak immunity or recent infection + cancer history"
               " + weight loss, night or rest pain, or thin bones/steroids")
    text = escalation.alert_text({"id": 4821, "level": "urgent", "summary": summary, "reason": "disposition"},
                                 PATIENT)
    assert summary in text
    assert text.endswith("Call +1 617-555-0123. Reply 1 to take it.")
    assert not gsm.non_gsm_characters(text)


# --- nobody on call --------------------------------------------------------------------------


def _empty_roster(services: Any, clock: Clock, supervisor: str) -> None:
    services.settings = services.settings.with_overrides(supervisor_phone=supervisor)
    services.pager.clock = clock


def test_nobody_on_call_pages_the_supervisor_and_records_the_gap(services: Any, clock: Clock) -> None:
    _empty_roster(services, clock, SUPERVISOR)
    escalation_id = open_case(services)

    assert pages(services) == [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]
    assert services.pager.to(SUPERVISOR, SMS)[0].body.startswith(f"EMERGENCY back pain {escalation_id}: ")
    assert [e["detail"] for e in events(services, escalation_id, "roster_gap")] == [{"tier": "primary"}]


def test_nobody_on_call_and_no_supervisor_still_pages_the_console_and_records_the_gap(
    services: Any, clock: Clock,
) -> None:
    _empty_roster(services, clock, "")
    escalation_id = open_case(services)

    assert pages(services) == [(NOBODY, SMS)]
    assert services.pager.sent[0].body.startswith(f"EMERGENCY back pain {escalation_id}: ")
    assert [e["detail"] for e in events(services, escalation_id, "roster_gap")] == [{"tier": "primary"}]
    step = events(services, escalation_id, "step")[0]["detail"]
    assert step["pages"] == [{"name": "nobody on call", "channel": SMS}]


def test_a_carrier_that_cannot_reach_nobody_prints_the_page_and_keeps_the_chain_on_time(
    services: Any, clock: Clock, capsys: pytest.CaptureFixture[str],
) -> None:
    _empty_roster(services, clock, "")
    services.pager.failures = [PagingFailed("not an E.164 phone number", transient=False, code="21211")]  # Twilio
    start = clock.now
    escalation_id = open_case(services)

    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"[ALERT SMS to {NOBODY}] EMERGENCY back pain {escalation_id}: 58y: chest pain or short of "
                       "breath. Call +1 617-555-0123. Reply 1 to take it."]
    assert [e["detail"]["to"] for e in events(services, escalation_id, "alert_sent")] == ["nobody on call"]
    assert events(services, escalation_id, "alert_failed") == []
    at(clock, start, 119)  # printed, not failed: the chain does not run out at once
    escalation.sweep(services)
    assert case(services, escalation_id)["next_step"] == 1
    assert capsys.readouterr().out == ""


def test_console_pages_from_two_processes_never_collide(services: Any, clock: Clock,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _empty_roster(services, clock, SUPERVISOR)
    for patient in (PATIENT, "+16175550177"):
        services.pager = ConsolePager()  # a restarted embedded server counts from 1 again
        open_case(services, phone=patient)
    alerts = Alerts(services.records).for_escalation(1) + Alerts(services.records).for_escalation(2)
    assert [a["status"] for a in alerts] == ["queued"] * 4
    assert len({a["twilio_sid"] for a in alerts}) == 4
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("[ALERT")]) == 4


def test_a_gap_in_the_backup_tier_pages_the_supervisor_in_its_place(services: Any, clock: Clock) -> None:
    _empty_roster(services, clock, SUPERVISOR)
    roster = Roster(services.records)
    primary = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    roster.add_shift(primary, starts_at=clock.now - timedelta(hours=1), ends_at=clock.now + timedelta(hours=1),
                     tier="primary")
    start = clock.now
    escalation_id = open_case(services)
    at(clock, start, 300)
    escalation.sweep(services)

    assert pages(services)[-2:] == [(SUPERVISOR, SMS), (SUPERVISOR, VOICE)]
    assert [e["detail"] for e in events(services, escalation_id, "roster_gap")] == [{"tier": "backup"}]


def test_a_shift_that_ends_hands_over_to_the_next_one(services: Any, clock: Clock) -> None:
    _empty_roster(services, clock, SUPERVISOR)
    roster = Roster(services.records)
    early = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    late = roster.add_clinician(name=BACKUP_NAME, role="physician", phone=BACKUP)
    roster.add_shift(early, starts_at=clock.now - timedelta(hours=8), ends_at=clock.now + timedelta(seconds=60),
                     tier="primary")
    roster.add_shift(late, starts_at=clock.now + timedelta(seconds=60), ends_at=clock.now + timedelta(hours=8),
                     tier="primary")
    start = clock.now
    open_case(services)
    at(clock, start, 120)
    escalation.sweep(services)

    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE), (BACKUP, VOICE)]


# --- pager failures --------------------------------------------------------------------------


def _first_step(services: Any, jobs: RecordingJobs, level: str = "emergency") -> tuple[int, list[dict[str, Any]]]:
    escalation_id = open_case(services, level)
    assert jobs.names() == ["run_due"]
    jobs.run_next()
    assert jobs.names() == ["deliver"] * (2 if level == "emergency" else 1)
    jobs.queued.clear()
    return escalation_id, Alerts(services.records).for_escalation(escalation_id)


def _alert(services: Any, alert_id: int) -> dict[str, Any]:
    found = Alerts(services.records).get(alert_id)
    assert found is not None
    return found


def test_a_transient_failure_raises_releases_the_alert_and_the_retry_pages_once(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    escalation_id, (sms, _) = _first_step(services, jobs)
    services.pager.failures = [PagingFailed("Twilio answered 503", transient=True, code="503")]

    with pytest.raises(PagingFailed):
        escalation.deliver(services, sms["id"])
    assert _alert(services, sms["id"])["status"] == "pending"
    assert pages(services) == []
    assert [e["detail"]["error"] for e in events(services, escalation_id, "alert_retry")] == ["503"]

    clock.advance(seconds=2)  # RQ's Retry runs the job again
    escalation.deliver(services, sms["id"])
    escalation.deliver(services, sms["id"])
    assert pages(services) == [(PRIMARY, SMS)]
    assert _alert(services, sms["id"])["status"] == "queued"
    assert case(services, escalation_id)["next_step"] == 1  # the chain kept its own time


def test_transient_failures_up_to_max_attempts_fail_the_alert_and_move_the_chain_on_at_once(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    escalation_id, (sms, voice) = _first_step(services, jobs)
    services.pager.failures = [PagingFailed("timeout", transient=True, code="network")] * MAX_ATTEMPTS

    for attempt in range(1, MAX_ATTEMPTS + 1):
        clock.advance(seconds=5)
        with pytest.raises(PagingFailed):
            escalation.deliver(services, sms["id"])
        assert _alert(services, sms["id"])["attempts"] == attempt
    assert _alert(services, sms["id"])["status"] == "failed"
    assert len(events(services, escalation_id, "alert_retry")) == MAX_ATTEMPTS - 1
    assert [e["detail"]["channel"] for e in events(services, escalation_id, "alert_failed")] == [SMS]
    assert case(services, escalation_id)["next_due_at"] == clock.now.isoformat()
    assert jobs.names() == ["run_due"]

    escalation.deliver(services, sms["id"])  # RQ's last retry finds nothing to do
    jobs.drain()  # the hurried step: primary by voice, now rather than at 120 s
    assert pages(services) == [(PRIMARY, VOICE)]
    escalation.deliver(services, voice["id"])
    assert pages(services) == [(PRIMARY, VOICE), (PRIMARY, VOICE)]
    assert case(services, escalation_id)["next_step"] == 2


@pytest.mark.parametrize("code", ["21211", "21614"])
def test_a_permanent_failure_fails_at_once_and_moves_on(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs, code: str,
) -> None:
    escalation_id, (sms, _) = _first_step(services, jobs)
    services.pager.failures = [PagingFailed("not a mobile number", transient=False, code=code)]

    with pytest.raises(PagingFailed):
        escalation.deliver(services, sms["id"])
    failed = _alert(services, sms["id"])
    assert (failed["status"], failed["error_code"], failed["attempts"]) == ("failed", code, 1)
    assert events(services, escalation_id, "alert_retry") == []
    assert jobs.names() == ["run_due"]
    jobs.drain()
    assert pages(services) == [(PRIMARY, VOICE)]
    escalation.deliver(services, sms["id"])
    assert pages(services) == [(PRIMARY, VOICE)]


def test_an_sms_opt_out_at_send_falls_back_to_a_voice_call(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    start = clock.now
    escalation_id, (sms,) = _first_step(services, jobs, "urgent")
    services.pager.failures = [RecipientOptedOut()]

    escalation.deliver(services, sms["id"])  # not a failure of the job: the page goes by voice instead
    assert _alert(services, sms["id"])["error_code"] == "21610"
    assert jobs.names() == ["deliver"]
    jobs.drain()
    assert pages(services) == [(PRIMARY, VOICE)]
    assert on_call.clinician_by_phone(PRIMARY)["sms_opted_out"] is True
    assert [e["detail"] for e in events(services, escalation_id, "sms_opted_out")] == [
        {"to": PRIMARY_NAME, "fallback": "voice"}]

    services.jobs = InlineJobs(services, synchronous=True)
    at(clock, start, 1800)  # round 2 starts with an SMS to the primary: it goes as a call
    escalation.sweep(services)
    assert pages(services)[-1] == (PRIMARY, VOICE)
    assert (PRIMARY, SMS) not in pages(services)


# --- exactly once ----------------------------------------------------------------------------


def test_delivering_the_same_alert_twice_sends_once(services: Any, on_call: Roster, jobs: RecordingJobs) -> None:
    _, (sms, voice) = _first_step(services, jobs)
    for alert in (sms, voice, sms, voice):
        escalation.deliver(services, alert["id"])
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]


def _race(workers: int, target: Callable[[], None]) -> list[BaseException]:
    barrier, errors = threading.Barrier(workers), []

    def run() -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def test_workers_racing_on_one_escalation_page_once_per_step_and_recipient(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    start = clock.now
    escalation_id = open_case(services)
    services.jobs = InlineJobs(services, synchronous=True)  # each worker delivers its own step's alerts

    for seconds, expected in EMERGENCY_TIMELINE[:6]:
        at(clock, start, seconds)
        before = len(services.pager.sent)
        assert _race(3, lambda: escalation.run_due(services, escalation_id)) == []
        assert sorted(pages(services)[before:]) == sorted(expected), f"at {seconds}s"
    one_alert_per_step_and_recipient(services, escalation_id)


def test_workers_racing_on_one_alert_send_it_once(
    services: Any, on_call: Roster, jobs: RecordingJobs,
) -> None:
    _, (sms, voice) = _first_step(services, jobs)

    def both() -> None:
        escalation.deliver(services, sms["id"])
        escalation.deliver(services, voice["id"])

    assert _race(4, both) == []
    assert sorted(pages(services)) == [(PRIMARY, SMS), (PRIMARY, VOICE)]


def test_a_claimed_alert_whose_sender_died_is_sent_by_a_later_sweep_exactly_once(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    escalation_id, (sms, voice) = _first_step(services, jobs)
    escalation.deliver(services, voice["id"])
    assert Alerts(services.records).claim(sms["id"], clock.now, CLAIM_STALE_AFTER) is not None  # then SIGKILL

    clock.advance(seconds=CLAIM_STALE_AFTER.total_seconds() - 1)
    escalation.sweep(services)
    assert pages(services) == [(PRIMARY, VOICE)]  # a live sender may still be on it

    clock.advance(seconds=1)
    escalation.sweep(services)
    escalation.sweep(services)
    assert pages(services) == [(PRIMARY, VOICE), (PRIMARY, SMS)]
    assert _alert(services, sms["id"])["status"] == "queued"
    assert len(events(services, escalation_id, "alert_sent")) == 2


def test_a_dead_sender_that_had_sent_is_found_and_not_sent_again(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    escalation_id, (sms, voice) = _first_step(services, jobs)
    escalation.deliver(services, voice["id"])
    Alerts(services.records).claim(sms["id"], clock.now, CLAIM_STALE_AFTER)
    sid = services.pager.send_sms(PRIMARY, sms["body"])  # handed to the carrier, then SIGKILL before mark

    clock.advance(seconds=CLAIM_STALE_AFTER.total_seconds())
    escalation.sweep(services)
    assert pages(services) == [(PRIMARY, VOICE), (PRIMARY, SMS)]
    recovered = _alert(services, sms["id"])
    assert (recovered["status"], recovered["twilio_sid"]) == ("queued", sid)
    assert [e["detail"]["sid"] for e in events(services, escalation_id, "alert_sent")
            if e["detail"]["channel"] == SMS] == [sid]


def test_alerts_created_but_never_queued_are_sent_by_the_sweep(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    _first_step(services, jobs)  # the deliver jobs were lost (the queue was down)
    clock.advance(seconds=PENDING_STUCK_AFTER.total_seconds() - 1)
    escalation.sweep(services)
    assert pages(services) == []

    clock.advance(seconds=1)
    escalation.sweep(services)
    assert pages(services) == [(PRIMARY, SMS), (PRIMARY, VOICE)]


def test_a_page_queued_after_the_case_was_taken_is_not_sent(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    escalation_id, (sms, voice) = _first_step(services, jobs)
    escalation.deliver(services, sms["id"])
    assert escalation.acknowledge(services, escalation_id, PRIMARY, PRIMARY_NAME) == "taken"

    escalation.deliver(services, voice["id"])
    assert pages(services) == [(PRIMARY, SMS)]
    assert _alert(services, voice["id"])["status"] == "canceled"


def test_a_failing_item_does_not_stop_the_sweep(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs,
) -> None:
    first, _ = _first_step(services, jobs)
    second = open_case(services, phone="+16175550177")
    jobs.run_next()
    jobs.queued.clear()  # four pages waiting, their deliver jobs lost
    services.pager.failures = [PagingFailed("Twilio answered 500", transient=True, code="500")]
    clock.advance(seconds=PENDING_STUCK_AFTER.total_seconds())

    escalation.sweep(services)  # the first page of the first case fails; everything else goes out
    assert [e["detail"]["error"] for e in events(services, first, "alert_retry")] == ["500"]
    assert len(events(services, second, "alert_sent")) == 2
    assert len(services.pager.sent) == 3


# --- what the API and the patient see --------------------------------------------------------


def test_the_api_shows_the_escalation_and_its_timeline(
    twilio: Any, client: Any, services: Any, on_call: Roster, clock: Clock,
) -> None:
    escalation_id = play_emergency(twilio, services)
    conversation_id = services.records.latest_conversation(PATIENT)["id"]
    clock.advance(seconds=130)
    escalation.sweep(services)
    clock.advance(seconds=10)
    assert "is yours" in twilio.sms("1", phone=PRIMARY)[0]

    response = api_get(client, f"/api/conversations/{conversation_id}")
    assert response.status_code == 200
    shown = response.get_json()["escalation"]
    assert shown["id"] == escalation_id
    assert (shown["status"], shown["acknowledged_by"]) == ("acknowledged", PRIMARY_NAME)
    assert shown["acknowledged_at"] == clock.now.isoformat()
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds == ["started", "step", "alert_sent", "alert_sent", "step", "alert_sent", "acknowledged"]
    assert shown["events"][-1]["detail"] == {"by": PRIMARY_NAME}
    assert all(set(e) == {"at", "kind", "detail"} for e in shown["events"])
    assert PRIMARY not in str(shown["events"])  # names on the timeline, not numbers


def _flows_with_callback_window(tmp_path: Path, window: str) -> Path:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    data = yaml.safe_load((flows / "escalation.yaml").read_text(encoding="utf-8"))
    data["chains"]["urgent"]["callback_window"] = window
    (flows / "escalation.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return flows


@pytest.mark.parametrize("window", ["about 1 hour", "20 minutes"])
def test_an_urgent_patient_is_told_the_callback_window_of_the_chain(
    twilio: Any, services: Any, on_call: Roster, tmp_path: Path, window: str,
) -> None:
    flows = _flows_with_callback_window(tmp_path, window)
    services.protocol = protocol_module.load(flows)
    services.chains = chain_module.load(flows)

    for answer in URGENT_ANSWERS:
        replies = twilio.sms(answer)
    assert f"A clinician will call you back within {window}." in " ".join(replies)
    conversation = services.records.latest_conversation(PATIENT)
    assert conversation["disposition"] == "urgent"
    found = case(services, conversation["escalation"]["id"])
    assert found["chain"]["callback_window"] == window
    assert pages(services) == [(PRIMARY, SMS)]
    assert re.match(rf"URGENT back pain {found['id']}: 33y: fever\. Call \+1 617-555-0123\. Reply 1 to take it\.$",
                    services.pager.sent[0].body)


class CallsByNumberOnly(FakePager):
    """Like Twilio for calls: finds a page by number and time, blind to which alert it was for."""

    def find_sent(self, to: str, channel: str, since: datetime, *, body: str | None = None) -> str | None:
        return super().find_sent(to, channel, since)


@pytest.mark.parametrize(("channel", "pager"), [(SMS, FakePager), (VOICE, FakePager), (VOICE, CallsByNumberOnly)])
def test_a_retry_never_takes_another_cases_page_to_the_same_clinician_for_its_own(
    services: Any, on_call: Roster, clock: Clock, jobs: RecordingJobs, channel: str, pager: type[FakePager],
) -> None:
    services.pager = pager(clock=clock)
    first, _ = _first_step(services, jobs)
    clock.advance(seconds=1)
    second, _ = _first_step(services, jobs)
    mine = next(a for a in Alerts(services.records).for_escalation(second) if a["channel"] == channel)
    theirs = next(a for a in Alerts(services.records).for_escalation(first) if a["channel"] == channel)
    services.pager.failures = [PagingFailed("Twilio answered 503", transient=True, code="503")]

    with pytest.raises(PagingFailed):
        escalation.deliver(services, mine["id"])
    clock.advance(seconds=1)
    escalation.deliver(services, theirs["id"])  # the other case's page reaches the same clinician
    clock.advance(seconds=2)
    escalation.deliver(services, mine["id"])  # the retry asks the carrier what was sent since...

    assert pages(services) == [(PRIMARY, channel), (PRIMARY, channel)]
    sids = {a["twilio_sid"] for a in (_alert(services, mine["id"]), _alert(services, theirs["id"]))}
    assert len(sids) == 2 and None not in sids
    if channel == SMS:
        assert [s.body.split(":")[0] for s in services.pager.sent] == [
            f"EMERGENCY back pain {first}", f"EMERGENCY back pain {second}"]
