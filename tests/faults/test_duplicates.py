"""Duplicate and out-of-order deliveries, over HTTP to gunicorn's two worker processes at once.

Twilio retries a webhook it thinks failed, and status callbacks arrive late or out of order.
What a patient notices: a repeated text, or a repeated call step, gets the same reply as the
first, however many copies arrive at once. What a clinician notices: one page per step, not one
per copy. What the record keeps: one inbound turn per MessageSid (or call step), one reply, one
escalation; an alert's delivery status that only moves forward, whatever order Twilio's
callbacks come in; a call closed once.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.faults.conftest import (
    PRIMARY, HttpCall, chain, flows_with, messages_of, sms_params, twiml, wait_for,
)

pytestmark = pytest.mark.integration

TEXTER, CALLER = "+16175550251", "+16175550252"
COPIES = 6


def at_once(count: int, send: Any) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


def test_duplicate_and_out_of_order_deliveries_change_nothing(
        shared_redis: str, database_url: str, fake: Any, make_line: Any, tmp_path: Any) -> None:
    flows = flows_with(tmp_path, chain((0, "primary", ["sms"]), (300, "backup", ["sms"]), round_seconds=600))
    line = make_line(shared_redis, database_url, fake, flows=flows)
    line.put_on_call()
    web = line.start_web()
    line.start_worker()
    hooks = web.hooks

    # The same text, retried after it was handled, then six copies of the next one at once.
    first = sms_params(TEXTER, "my back hurts")
    replies = messages_of(hooks.post("/twilio/sms", first))
    assert messages_of(hooks.post("/twilio/sms", first)) == replies
    age = sms_params(TEXTER, "58")
    answers = at_once(COPIES, lambda: messages_of(hooks.post("/twilio/sms", age)))
    assert all(a == answers[0] for a in answers) and "chest pain" in answers[0][-1]

    # The emergency answer, six copies at once: one instruction for all, one escalation, one page.
    yes = sms_params(TEXTER, "yes")
    instructions = at_once(COPIES, lambda: messages_of(hooks.post("/twilio/sms", yes)))
    assert all(i == instructions[0] for i in instructions) and instructions[0][0].startswith("Call 911 now")
    record = line.latest(TEXTER, "sms")
    ins = [t["text"] for t in record["turns"] if t["direction"] == "in"]
    assert ins == ["my back hurts", "58", "yes"]
    outs = [t["text"] for t in record["turns"] if t["direction"] == "out"]
    assert outs == [*replies, *answers[0], *instructions[0]]
    escalation_id = record["escalation"]["id"]
    wait_for(lambda: line.events(escalation_id, "alert_sent"), timeout=15, what="the page")
    assert len(fake.to(PRIMARY, "sms")) == 1
    assert len(line.records.list_conversations(phone=TEXTER)) == 1

    # Delivery callbacks late, repeated and out of order: the status never moves back.
    [alert] = line.alerts(escalation_id)
    path = f"/twilio/alerts/status?alert={alert['id']}"
    for status in ("delivered", "sent", "delivered", "queued", "sending"):
        response = hooks.post(path, {"MessageSid": alert["twilio_sid"], "MessageStatus": status,
                                     "AccountSid": "AC" + "0" * 32})
        assert response.status_code == 204
    assert line.alerts(escalation_id)[0]["status"] == "delivered"
    deliveries = [e["detail"]["status"] for e in line.events(escalation_id, "delivery")]
    assert deliveries == ["delivered"]

    # A call: the same step twice in a row, then twice at once; the status callback twice at once.
    call = HttpCall(lambda: hooks, CALLER)
    call.start()
    heard = ElementTree.tostring(call.press("45"))
    assert ElementTree.tostring(call.retry()) == heard
    path, params = call.action(), call.params(Digits="2")
    steps = at_once(COPIES, lambda: ElementTree.tostring(twiml(hooks.post(path, params))))
    assert len(set(steps)) == 1
    ended = at_once(COPIES, lambda: call.status("completed").status_code)
    assert set(ended) == {204}
    assert call.status("ringing").status_code == 204  # a late "ringing" after the end changes nothing
    conversation = line.latest(CALLER, "voice")
    assert [t["digits"] for t in conversation["turns"] if t["direction"] == "in"] == ["45", "2"]
    assert conversation["status"] == "abandoned" and conversation["ended_at"]
    assert len(line.records.list_conversations(phone=CALLER)) == 1
    assert len(fake.all()) == 1
