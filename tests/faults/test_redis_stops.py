"""Redis stops in the middle of conversations, then comes back empty (no persistence).

What a patient notices: every text and every call step still gets HTTP 200 and TwiML telling
them to call 911 if this is an emergency (a call then hangs up). What the record keeps: each turn
that arrived meanwhile and the fail-safe reply, written straight to SQL; a call that ended
meanwhile is closed (and escalated: it had an urgent answer). When Redis is back, the next text
goes on from the durable record, and new calls work.
"""
from __future__ import annotations

from typing import Any

import pytest

from telehealth.web.twilio_guard import FAILSAFE_SMS, FAILSAFE_VOICE
from tests.faults.conftest import PRIMARY, HttpCall, said, timed, wait_for

pytestmark = pytest.mark.integration

TEXTER, CALLER, NEWCOMER = "+16175550201", "+16175550202", "+16175550203"


def test_redis_stopping_mid_conversation_still_answers_records_the_turns_and_recovers(
        private_redis: Any, database_url: str, fake: Any, make_line: Any) -> None:
    line = make_line(private_redis.url, database_url, fake)
    line.put_on_call()
    web = line.start_web()
    worker = line.start_worker()
    hooks = web.hooks

    # Before: an SMS conversation two questions in, a call with an urgent answer (age 15).
    assert "How old are you?" in hooks.sms(TEXTER, "my back hurts")[-1]
    assert "chest pain" in hooks.sms(TEXTER, "45")[-1]
    call = HttpCall(lambda: hooks, CALLER)
    call.start()
    call.press("15")
    assert call.action()

    private_redis.stop()

    replies, took = timed(lambda: hooks.sms(TEXTER, "no", sid="SM" + "a" * 32))
    assert replies == [FAILSAFE_SMS] and "911" in replies[0]
    assert took < 2, f"the fail-safe took {took:.2f}s"
    answered = call.press("2")
    assert said(answered) == [FAILSAFE_VOICE] and call.hung_up and "911" in said(answered)[0]
    assert call.status("completed").status_code == 204
    assert hooks.sms(NEWCOMER, "hello, my back is killing me", sid="SM" + "b" * 32) == [FAILSAFE_SMS]
    not_ready = web.ready()
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["redis"] is False

    # The durable record has every turn that arrived, and the reply that was sent.
    texter = line.latest(TEXTER, "sms")
    assert [(t["direction"], t["text"]) for t in texter["turns"]][-2:] == [("in", "no"), ("out", FAILSAFE_SMS)]
    assert texter["status"] == "active" and texter["facts"].get("age") == 45
    caller = line.latest(CALLER, "voice")
    assert [(t["direction"], t["text"], t["digits"]) for t in caller["turns"]][-2:] == [
        ("in", "2", "2"), ("out", FAILSAFE_VOICE, None)]
    # The call ended during the outage with an urgent answer: closed and escalated from SQL alone.
    assert (caller["status"], caller["disposition"]) == ("abandoned", "urgent")
    assert caller["escalation"] and caller["escalation"]["status"] == "pending"
    newcomer = line.latest(NEWCOMER, "sms")
    assert [(t["direction"], t["text"]) for t in newcomer["turns"]] == [
        ("in", "hello, my back is killing me"), ("out", FAILSAFE_SMS)]
    # Whoever is on call is asked to ring the patients back (sent from the web process: the queue is down).
    faults = wait_for(lambda: [p for p in fake.to(PRIMARY, "sms") if p.body.startswith("LINE FAULT")],
                      timeout=10, what="the fault pages")
    assert any("617-555-0201" in p.body for p in faults)

    private_redis.start()  # back, and empty: every live session is gone
    wait_for(lambda: web.ready().status_code == 200, timeout=15, what="readiness after Redis is back")

    # The texter goes on from the durable record: the repeated answer is taken for the question.
    picked_up = hooks.sms(TEXTER, "no")
    assert picked_up[0].startswith("Sorry, our system lost its place") and "ripping or tearing" in picked_up[-1]
    replies = picked_up
    for _ in range(20):
        if line.latest(TEXTER, "sms")["status"] != "active":
            break
        replies = hooks.sms(TEXTER, "no")
    texter = line.latest(TEXTER, "sms")
    assert (texter["status"], texter["disposition"]) == ("completed", "routine")
    assert texter["facts"]["age"] == 45 and texter["facts"]["chest_pain"] is False
    ins = [t["text"] for t in texter["turns"] if t["direction"] == "in"]
    assert ins[:4] == ["my back hurts", "45", "no", "no"]  # nothing lost, nothing doubled

    # The newcomer's next text starts the check in the conversation the fail-safe opened.
    started = hooks.sms(NEWCOMER, "my back hurts")
    assert started[0].startswith("Back pain line") and "How old are you?" in started[-1]
    assert line.latest(NEWCOMER, "sms")["id"] == newcomer["id"]

    # New calls work again.
    again = HttpCall(lambda: hooks, CALLER)
    assert any("How old are you" in text for text in said(again.start()))
    # The worker lived through it, and the escalation opened while Redis was down is paged, once.
    escalation_id = caller["escalation"]["id"]
    wait_for(lambda: line.events(escalation_id, "alert_sent"), timeout=30, what="the call's escalation page")
    assert len([p for p in fake.to(PRIMARY, "sms") if p.body.startswith(f"URGENT back pain {escalation_id}:")]) == 1
    assert web.alive and worker.alive
