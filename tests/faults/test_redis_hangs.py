"""Redis hangs: the test's own redis-server is SIGSTOPped for 30 seconds, then SIGCONTed.

A hung Redis accepts connections and never answers, the worst case for a client. What a patient
notices: every webhook still answers within a second (the Redis client's 0.5 s socket timeouts,
and the fail-safe does not wait for the queue on the same Redis a second time), with the 911
advice. No gunicorn worker gets stuck: the same worker processes serve throughout, none is killed
for a timeout (the Procfile's --timeout is 30 s, as long as the hang). After SIGCONT the
conversations go on where they were, and the rq worker (whose own connection just waited) pages
a new emergency.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from telehealth.web.twilio_guard import FAILSAFE_SMS, FAILSAFE_VOICE
from tests.faults.conftest import PRIMARY, HttpCall, messages_of, said, sms_params, wait_for

pytestmark = pytest.mark.integration

HANG_SECONDS = 30
BUDGET_SECONDS = 1.0
TEXTER, CALLER, EMERGENCY = "+16175550211", "+16175550212", "+16175550213"


def test_a_hung_redis_never_holds_a_webhook_past_a_second_and_conversations_resume(
        private_redis: Any, database_url: str, fake: Any, make_line: Any) -> None:
    line = make_line(private_redis.url, database_url, fake)
    line.put_on_call()
    web = line.start_web()
    line.start_worker()
    hooks = web.hooks

    hooks.sms(TEXTER, "my back hurts")
    assert "chest pain" in hooks.sms(TEXTER, "45")[-1]
    call = HttpCall(lambda: hooks, CALLER)
    call.start()
    call.press("45")
    question = call.action()
    workers_before = web.gunicorn_workers()
    assert len(workers_before) == 2, workers_before

    private_redis.pause()
    slow: list[tuple[str, float]] = []
    took_all: list[float] = []
    bad: list[str] = []
    counts = {"sms": 0, "voice": 0, "status": 0}
    stop_at = time.monotonic() + HANG_SECONDS

    def patient_texts(number: str) -> None:
        while time.monotonic() < stop_at - BUDGET_SECONDS:
            started = time.monotonic()
            response = hooks.post("/twilio/sms", sms_params(number, "no"), timeout=10)
            took = time.monotonic() - started
            took_all.append(took)
            counts["sms"] += 1
            if took > BUDGET_SECONDS:
                slow.append(("sms", took))
            if messages_of(response) != [FAILSAFE_SMS]:
                bad.append(response.text)

    def caller_keys() -> None:
        while time.monotonic() < stop_at - BUDGET_SECONDS:
            for path, params in ((question, call.params(Digits="2")),
                                 ("/twilio/voice/status", call.params(CallStatus="ringing"))):
                started = time.monotonic()
                response = hooks.post(path, params, timeout=10)
                took = time.monotonic() - started
                took_all.append(took)
                kind = "status" if "status" in path else "voice"
                counts[kind] += 1
                if took > BUDGET_SECONDS:
                    slow.append((kind, took))
                if kind == "voice" and FAILSAFE_VOICE not in response.text:
                    bad.append(response.text)
                if kind == "status" and response.status_code != 204:
                    bad.append(response.text)

    threads = [threading.Thread(target=patient_texts, args=(TEXTER,)), threading.Thread(target=caller_keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_SECONDS + 30)
    time.sleep(max(0.0, stop_at - time.monotonic()))
    private_redis.resume()

    print(f"during the hang: {counts}, slowest answer {max(took_all):.3f}s")
    assert not bad, bad[:3]
    assert not slow, f"{len(slow)} webhooks took longer than {BUDGET_SECONDS}s: {slow[:5]}"
    assert counts["sms"] >= 10 and counts["voice"] >= 5, counts
    assert web.gunicorn_workers() == workers_before, "a gunicorn worker was replaced"
    assert "WORKER TIMEOUT" not in web.output()

    # Every text that arrived during the hang is in the record, with the reply it got.
    texter = line.latest(TEXTER, "sms")
    failsafe_turns = [t for t in texter["turns"] if t["direction"] == "out" and t["text"] == FAILSAFE_SMS]
    assert len(failsafe_turns) == counts["sms"]

    # After SIGCONT: the live state was only frozen, so the texter goes on where they were.
    wait_for(lambda: web.ready().status_code == 200, timeout=10, what="readiness after SIGCONT")
    started = time.monotonic()
    assert "ripping or tearing" in hooks.sms(TEXTER, "no")[-1]
    assert time.monotonic() - started < BUDGET_SECONDS
    texter = line.latest(TEXTER, "sms")
    assert texter["facts"] == {"age": 45, "chest_pain": False}
    # A new call works, and the worker, whose own connection just waited, pages a new emergency.
    assert any("How old are you" in text for text in said(HttpCall(lambda: hooks, CALLER).start()))
    hooks.sms(EMERGENCY, "my back hurts")
    hooks.sms(EMERGENCY, "58")
    assert "Call 911 now" in hooks.sms(EMERGENCY, "yes")[0]
    wait_for(lambda: [p for p in fake.to(PRIMARY, "sms") if p.body.startswith("EMERGENCY")], timeout=20,
             what="the emergency page after the hang")
    assert all(w.alive for w in [*line.webs, *line.workers])
