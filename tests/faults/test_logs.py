"""The logs of the web and worker processes carry ids only: never a phone number, a message's
text or an answer.

A whole conversation of each disposition (routine, urgent, emergency) is played over SMS and
over voice through gunicorn, with a worker paging the chain through the fake Twilio, and a
clinician taking a case by text. Then every line the web and worker processes wrote is read.
The patients' texts and spoken answers carry unusual words, so a leak cannot hide among the
line's own vocabulary; the phone numbers are looked for in any format (E.164, national,
digits with separators).
"""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.faults.conftest import BACKUP, PRIMARY, HttpCall, wait_for

pytestmark = pytest.mark.integration

NO = ["no"] * 13
SMS = {
    "+16175550291": ["My back hurts after gardening with the zanzibar hoe", "63", *NO],  # routine
    "+16175550292": ["Lower back pain since the quokka incident", "33", *["no"] * 9, "yes", "no", "no", "no"],
    "+16175550293": ["back pain, xylophone lessons did it", "47", "yes it hurts a lot, marmalade"],  # emergency
}
VOICE = {
    "+16175550294": [{"Digits": "63"}, {"SpeechResult": "nope, never had that periwinkle", "Confidence": "0.91"},
                     *[{"Digits": "2"}] * 14],  # routine
    "+16175550295": [{"Digits": "15"}, *[{"Digits": "2"}] * 16],  # under 18: urgent
    "+16175550296": [{"Digits": "58"}, {"SpeechResult": "Yes I do, tangerine", "Confidence": "0.88"}],  # emergency
}
ID_FIELDS = {"at", "level", "logger", "event", "request_id", "conversation_id", "escalation_id", "endpoint",
             "error", "where", "disposition", "rule", "job"}


def formats(phone: str) -> list[str]:
    national = phone.removeprefix("+1")
    return [phone, national, f"{national[:3]}-{national[3:6]}-{national[6:]}", f"({national[:3]}) {national[3:6]}",
            f"{national[:3]} {national[3:6]} {national[6:]}"]


def test_no_phone_number_text_or_answer_reaches_a_log_line(
        shared_redis: str, database_url: str, fake: Any, make_line: Any) -> None:
    line = make_line(shared_redis, database_url, fake)
    line.put_on_call()
    web = line.start_web()
    line.start_worker()
    hooks = web.hooks

    for phone, bodies in SMS.items():
        for body in bodies:
            hooks.sms(phone, body)
            if line.latest(phone)["status"] != "active":
                break
    for phone, answers in VOICE.items():
        call = HttpCall(lambda: hooks, phone)
        call.start()
        for answer in answers:
            if call.hung_up:
                break
            call._post(call.action(), call.params(**answer))
        call.status("completed")
    outcomes = {phone: line.latest(phone)["disposition"] for phone in [*SMS, *VOICE]}
    assert sorted(outcomes.values()) == sorted(["routine", "urgent", "emergency"] * 2), outcomes
    escalations = [line.latest(p)["escalation"]["id"] for p in outcomes if line.latest(p)["escalation"]]
    wait_for(lambda: all(line.events(e, "alert_sent") for e in escalations), timeout=30, what="the pages")
    assert hooks.sms(PRIMARY, "1")[0].startswith("Thank you, case")  # a clinician takes a case by text
    assert any(line.escalation(e)["status"] == "acknowledged" for e in escalations)

    texts = [b for bodies in SMS.values() for b in bodies if len(b) > 3] + \
            [a["SpeechResult"] for answers in VOICE.values() for a in answers if "SpeechResult" in a]
    answers = {b for bodies in SMS.values() for b in bodies} | \
              {v for answers in VOICE.values() for a in answers for k, v in a.items() if k != "Confidence"}
    numbers = [f for phone in [*SMS, *VOICE, PRIMARY, BACKUP] for f in formats(phone)]
    line.close()  # every process stopped: its log is complete
    by_process = {p.name: p.output().splitlines() for p in [*line.webs, *line.workers]}
    lines = [text for output in by_process.values() for text in output]
    assert all(len(output) > 5 for output in by_process.values()), "a process logged almost nothing"
    assert any("escalations.deliver" in text for text in by_process["worker-1"])  # it sent pages
    json_lines = 0
    for text in lines:
        digits = re.sub(r"\D", "", text)
        for number in numbers:
            assert number not in text and re.sub(r"\D", "", number)[-10:] not in digits, f"a number leaked: {text}"
        lowered = text.lower()
        for said in texts:
            assert said.lower() not in lowered, f"a patient's words leaked: {text}"
        for word in ("zanzibar", "quokka", "xylophone", "marmalade", "periwinkle", "tangerine"):
            assert word not in lowered, f"a patient's words leaked: {text}"
        if text.startswith("{"):
            json_lines += 1
            record = json.loads(text)
            assert set(record) <= ID_FIELDS, f"an unexpected field was logged: {text}"
            for key, value in record.items():
                if key not in ("at", "event") and isinstance(value, str):
                    assert value not in answers, f"an answer was logged as {key}: {text}"
    assert json_lines > 5
