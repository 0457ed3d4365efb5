"""The records database is unreachable for a while: a TCP proxy between the line and PostgreSQL
drops every connection and refuses new ones (a crashed or restarting server), then comes back.

What a patient notices: nothing. Conversations go on from Redis: texts and calls in progress,
and new ones, get their next question; an emergency gets the 911 instruction at once. What the
operator sees: /readyz answers 503 naming the database, with the writes waiting in the outbox;
the supervisor is paged that an emergency case is waiting (the roster is in the database).
What the record keeps: every turn and state change made meanwhile, written in order from the
Redis outbox once the database answers again (by the workers' sweep and the next webhooks);
nothing lost, nothing doubled. The emergency's escalation is created then, dated when it was
flagged, and the chain pages exactly once.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.faults.conftest import (
    PRIMARY, SUPERVISOR, HttpCall, TcpProxy, chain, flows_with, said, wait_for,
)

pytestmark = pytest.mark.integration

TEXTER, EMERGENCY, CALLER, NEW_CALLER = "+16175550221", "+16175550222", "+16175550223", "+16175550224"


class Transcript:
    """What a patient sent and was sent, to compare with the durable record."""

    def __init__(self, hooks: Any, phone: str) -> None:
        self.hooks, self.phone, self.turns = hooks, phone, []

    def text(self, body: str) -> list[str]:
        replies = self.hooks.sms(self.phone, body)
        self.turns += [("in", body), *(("out", r) for r in replies)]
        return replies


def test_with_the_database_down_conversations_go_on_and_every_write_arrives_later(
        shared_redis: str, database_url: str, fake: Any, make_line: Any, tmp_path: Any) -> None:
    proxy = TcpProxy(("127.0.0.1", make_url(database_url).port or 5432)).start()
    via_proxy = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    flows = flows_with(tmp_path, chain((0, "primary", ["sms"]), (300, "backup", ["sms"]), round_seconds=600))
    line = make_line(shared_redis, via_proxy, fake, flows=flows, read_url=database_url)
    line.put_on_call()
    web = line.start_web()
    line.start_worker()
    hooks = web.hooks

    texter = Transcript(hooks, TEXTER)
    texter.text("my back hurts")
    texter.text("45")
    call = HttpCall(lambda: hooks, CALLER)
    call.start()
    call.press("45")
    recorded_before = len(texter.turns)
    assert len(line.latest(TEXTER, "sms")["turns"]) == recorded_before

    proxy.cut()

    # Texts and calls in progress go on, new ones start, an emergency is told to call 911 at once.
    for answer in ("no", "no", "no"):
        assert texter.text(answer)[-1].endswith("Reply YES or NO.")
    emergency = Transcript(hooks, EMERGENCY)
    emergency.text("my back hurts")
    emergency.text("58")
    assert emergency.text("yes")[0].startswith("Call 911 now")
    assert said(call.press("2"))  # the next question
    call.press("2")
    assert call.status("completed").status_code == 204  # hangs up mid-triage
    new_call = HttpCall(lambda: hooks, NEW_CALLER)
    assert any("How old are you" in s for s in said(new_call.start()))
    new_call.press("70")

    ready = web.ready()
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    assert ready.json()["outbox"]["pending"] > 0
    # The record has none of it yet; the supervisor hears that an emergency case waits.
    assert len(line.latest(TEXTER, "sms")["turns"]) == recorded_before and line.latest(EMERGENCY) is None
    waiting = wait_for(lambda: [p for p in fake.to(SUPERVISOR, "sms") if "records database down" in p.body],
                       timeout=20, what="the supervisor's page about the waiting emergency")
    assert "EMERGENCY" in waiting[0].body and "617-555-0222" in waiting[0].body
    assert not [p for p in fake.all() if p.body.startswith("EMERGENCY")], "paged before the chain could start"

    proxy.restore()
    wait_for(lambda: web.ready().status_code == 200 and web.ready().json()["outbox"]["pending"] == 0,
             timeout=30, what="the outbox to be written after the database came back")

    # Everything said during the outage is in the record, in order, once.
    record = line.latest(TEXTER, "sms")
    assert [(t["direction"], t["text"]) for t in record["turns"]] == texter.turns
    assert record["facts"] == {"age": 45, "chest_pain": False, "tearing_pain_or_abdominal": False,
                               "fainted_or_lightheaded": False}
    flagged = line.latest(EMERGENCY, "sms")
    assert [(t["direction"], t["text"]) for t in flagged["turns"]] == emergency.turns
    assert (flagged["status"], flagged["disposition"], flagged["rule"]) == ("completed", "emergency", flagged["rule"])
    caller = line.latest(CALLER, "voice")
    assert [t["digits"] for t in caller["turns"] if t["direction"] == "in"] == ["45", "2", "2"]
    assert caller["status"] == "abandoned"
    newcomer = line.latest(NEW_CALLER, "voice")
    assert newcomer["facts"] == {"age": 70} and newcomer["status"] == "active"
    assert web.ready().json()["outbox"]["dead_letters"] == 0

    # The emergency's escalation: created now, dated when it was flagged, paged exactly once.
    escalation_id = flagged["escalation"]["id"]
    [started] = line.events(escalation_id, "started")
    assert started["detail"]["written_late"] is True
    wait_for(lambda: line.events(escalation_id, "alert_sent"), timeout=20, what="the primary's page")
    pages = [p for p in fake.to(PRIMARY, "sms") if p.body.startswith(f"EMERGENCY back pain {escalation_id}:")]
    assert len(pages) == 1
    assert [e["detail"]["step"] for e in line.events(escalation_id, "step")] == [0]

    # The conversations go on, now straight to the database (the new one under its real id).
    texter.text("no")
    assert [(t["direction"], t["text"]) for t in line.latest(TEXTER, "sms")["turns"]] == texter.turns
    emergency.text("thank you")
    assert [(t["direction"], t["text"]) for t in line.latest(EMERGENCY, "sms")["turns"]] == emergency.turns
    new_call.press("2")
    assert [t["digits"] for t in line.latest(NEW_CALLER, "voice")["turns"] if t["direction"] == "in"] == ["70", "2"]
    proxy.cut()
