"""Twilio's REST API fails while an escalation pages: 500, 429, a timeout, a number it rejects.

Four emergencies at once, one per failure, each injected into the fake Twilio for the pages that
carry that patient's number. What a clinician notices: the page arrives after retries with
backoff (RQ's 2 s then 10 s), or, when Twilio keeps refusing or rejects the number for good, the
chain moves on to the next step at once (the backup, before that step's own time). What the
record shows: every failed attempt on the escalation's timeline, with Twilio's error, and also in
the JSON API; every escalation ends with a page sent; no page is sent twice.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from telehealth.escalation import readable
from tests.faults.conftest import BACKUP, BACKUP_NAME, PRIMARY, chain, flows_with, wait_for

pytestmark = pytest.mark.integration

BACKUP_AFTER = 40  # the backup's own time: an early backup page means the chain was hurried on
PATIENTS = {"500": "+16175550231", "429": "+16175550232", "timeout": "+16175550233", "rejected": "+16175550234"}


def test_twilio_errors_are_retried_with_backoff_then_the_chain_moves_on_and_nothing_is_dropped(
        shared_redis: str, database_url: str, fake: Any, make_line: Any, tmp_path: Any) -> None:
    flows = flows_with(tmp_path, chain((0, "primary", ["sms"]), (BACKUP_AFTER, "backup", ["sms"]),
                                       round_seconds=120))
    line = make_line(shared_redis, database_url, fake, flows=flows, TWILIO_TIMEOUT_SECONDS="1.5")
    line.put_on_call()
    web = line.start_web()
    line.start_worker()

    def about(case: str) -> str:
        return readable(PATIENTS[case])  # each alert text carries its patient's number

    fake.fail(500, times=2, contains=about("500"))  # then Twilio takes it
    fake.fail(429, code=20429, times=-1, to=PRIMARY, contains=about("429"))  # never, for the primary
    fake.fail(500, times=1, stall=4, contains=about("timeout"))  # answers after the pager gave up
    fake.fail(400, code=21614, times=-1, to=PRIMARY, contains=about("rejected"))  # 'To' cannot take SMS

    cases: dict[str, int] = {}
    for case, phone in PATIENTS.items():
        web.hooks.sms(phone, "my back hurts")
        web.hooks.sms(phone, "58")
        assert web.hooks.sms(phone, "yes")[0].startswith("Call 911 now")
        cases[case] = line.latest(phone, "sms")["escalation"]["id"]

    def sent(case: str) -> list[dict[str, Any]]:
        return line.events(cases[case], "alert_sent")

    wait_for(lambda: all(sent(case) for case in cases) and len(sent("429")) and
             any(e["detail"]["to"] == BACKUP_NAME for e in sent("429")), timeout=45,
             what="every escalation to have a page sent")

    def kinds(case: str) -> list[tuple[str, str]]:
        return [(e["kind"], e["detail"].get("error", "")) for e in line.events(cases[case])
                if e["kind"] in ("alert_retry", "alert_failed", "alert_sent")]

    # 500 twice: retried with backoff, then sent to the primary on the third attempt.
    assert kinds("500") == [("alert_retry", "500"), ("alert_retry", "500"), ("alert_sent", "")]
    [primary] = line.alerts(cases["500"])
    assert primary["attempts"] == 3 and primary["status"] == "queued"
    hits = fake._failures[0].hits
    assert (hits[1] - hits[0]).total_seconds() >= 1.5, "retried without backing off"

    # 429 every time for the primary: three attempts, then failed, then the backup at once.
    assert kinds("429") == [("alert_retry", "20429"), ("alert_retry", "20429"), ("alert_failed", "20429"),
                            ("alert_sent", "")]
    backup_step = [e for e in line.events(cases["429"], "step") if e["detail"]["to"] == "backup"]
    started = datetime.fromisoformat(line.escalation(cases["429"])["created_at"])
    assert (datetime.fromisoformat(backup_step[0]["at"]) - started).total_seconds() < BACKUP_AFTER
    assert [(e["detail"]["to"], e["detail"]["channel"]) for e in sent("429")] == [(BACKUP_NAME, "sms")]

    # A request that timed out: retried, Twilio asked first (it had not taken it), then sent once.
    assert kinds("timeout") == [("alert_retry", "network"), ("alert_sent", "")]
    assert len([p for p in fake.to(PRIMARY) if about("timeout") in p.body]) == 1

    # A number Twilio rejects for good: no retry, the chain goes on to the backup at once.
    assert kinds("rejected") == [("alert_failed", "21614"), ("alert_sent", "")]
    assert sent("rejected")[0]["detail"]["to"] == BACKUP_NAME
    rejected_backup = [e for e in line.events(cases["rejected"], "step") if e["detail"]["to"] == "backup"][0]
    started = datetime.fromisoformat(line.escalation(cases["rejected"])["created_at"])
    assert (datetime.fromisoformat(rejected_backup["at"]) - started).total_seconds() < 10

    # The failures are on the timeline the JSON API serves, too.
    conversation = web.conversation(PATIENTS["429"])
    api_kinds = [e["kind"] for e in conversation["escalation"]["events"]]
    assert api_kinds.count("alert_retry") == 2 and "alert_failed" in api_kinds
    assert all(line.escalation(c)["status"] == "pending" for c in cases.values())  # still paging: never dropped
    # Exactly once: every page Twilio took is the one page of one alert; refused ones have none.
    alerts = [a for c in cases.values() for a in line.alerts(c)]
    assert Counter(p.sid for p in fake.all()) == Counter(a["twilio_sid"] for a in alerts if a["twilio_sid"])
    assert {(a["status"], a["error_code"]) for a in alerts if not a["twilio_sid"]} == {
        ("failed", "20429"), ("failed", "21614")}
    assert {p.to for p in fake.all()} <= {PRIMARY, BACKUP} and not fake.problems
