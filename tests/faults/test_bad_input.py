"""Bad input and abuse over HTTP, against gunicorn: forged and replayed webhooks, oversized
bodies, a flood of texts from one number and many numbers at once.

(Fuzzing of what Twilio can deliver is test_fuzz.py; the console's abuse cases are
test_console_abuse.py.)
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests

from telehealth.conversations import FLOOD_TEXT
from telehealth.sessions import Keys
from tests.faults.conftest import (
    PUBLIC_BASE_URL, Hooks, messages_of, sms_params, timed,
)

pytestmark = pytest.mark.integration

PATIENT, FORGED, BIG, FLOODER, CALM = "+16175550271", "+16175550272", "+16175550273", "+16175550274", "+16175550275"
FLOOD_LIMIT = 20  # the default: above a fast patient's whole conversation (about 15 texts)


def test_forged_requests_are_refused_and_a_replayed_one_changes_nothing(
        shared_redis: str, database_url: str, make_line: Any) -> None:
    line = make_line(shared_redis, database_url)
    web = line.start_web()
    hooks = web.hooks
    params = sms_params(FORGED, "my back hurts")
    forged = {
        "unsigned": hooks.post("/twilio/sms", params, sign=False),
        "wrong token": Hooks(web.base_url, token="not-the-token").post("/twilio/sms", params),
        "signed for another URL": hooks.post("/twilio/sms", params, signature=hooks.validator.compute_signature(
            f"{PUBLIC_BASE_URL}/twilio/voice", params)),
        "tampered": hooks.post("/twilio/sms", {**params, "Body": "yes"},
                               signature=hooks.validator.compute_signature(PUBLIC_BASE_URL + "/twilio/sms", params)),
        "forged call": hooks.post("/twilio/voice", {"CallSid": "CA" + "f" * 32, "From": FORGED}, sign=False),
    }
    assert {name: r.status_code for name, r in forged.items()} == dict.fromkeys(forged, 403)
    assert line.latest(FORGED) is None

    # A processed text replayed byte for byte (a captured request, or Twilio retrying), later on.
    first = sms_params(PATIENT, "my back hurts")
    second = sms_params(PATIENT, "45")
    hooks.sms(PATIENT, first["Body"], sid=first["MessageSid"])
    answer = messages_of(hooks.post("/twilio/sms", second))
    hooks.sms(PATIENT, "no")
    before = line.latest(PATIENT)
    assert messages_of(hooks.post("/twilio/sms", second)) == answer  # from the reply cache
    redis.Redis.from_url(shared_redis).delete(Keys.reply.format(sid=second["MessageSid"]))
    assert messages_of(hooks.post("/twilio/sms", second)) == answer  # from the durable record
    after = line.latest(PATIENT)
    assert after["turns"] == before["turns"] and after["facts"] == before["facts"] == {"age": 45, "chest_pain": False}
    assert "pass out" in hooks.sms(PATIENT, "no")[-1]  # the conversation goes on unharmed


def test_an_oversized_body_is_refused_with_413_before_any_work(
        shared_redis: str, database_url: str, make_line: Any) -> None:
    line = make_line(shared_redis, database_url)
    web = line.start_web()
    big = sms_params(BIG, "x" * 70_000)
    response, took = timed(lambda: web.hooks.post("/twilio/sms", big))
    assert response.status_code == 413 and took < 2
    huge = requests.post(f"{web.base_url}/twilio/sms", data=b"Body=" + b"y" * 5_000_000, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert huge.status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        yield b"From=%2B16175550273&Body="
        for _ in range(100):
            yield b"z" * 1024

    chunked = requests.post(f"{web.base_url}/twilio/sms", data=chunks(), timeout=10,
                            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert chunked.status_code == 413
    assert line.latest(BIG) is None
    assert web.hooks.sms(BIG, "my back hurts")[-1].startswith("How old are you?")  # a normal text is fine
    assert web.alive


def test_a_flood_from_one_number_is_limited_with_the_911_advice_and_nobody_else_notices(
        shared_redis: str, database_url: str, make_line: Any) -> None:
    line = make_line(shared_redis, database_url)
    web = line.start_web()
    while time.time() % 60 > 40:  # the limit counts per clock minute: keep the flood inside one
        time.sleep(0.5)
    hooks = web.hooks

    with ThreadPoolExecutor(6) as pool:
        flood = pool.map(lambda i: messages_of(hooks.post("/twilio/sms", sms_params(FLOODER, f"spam {i}"))),
                         range(3 * FLOOD_LIMIT))
        crowd = pool.map(lambda n: messages_of(hooks.post("/twilio/sms", sms_params(f"+1617555{n:04d}", "back pain"))),
                         range(3000, 3030))
        calm: list[float] = []
        answers = ["My back hurts", "40", *["no"] * 13]
        for body in answers:  # a patient texting through all of it
            replies, took = timed(lambda: hooks.sms(CALM, body))
            calm.append(took)
        flood, crowd = list(flood), list(crowd)

    answered = [r for r in flood if r and r != [FLOOD_TEXT]]
    assert len(answered) == FLOOD_LIMIT
    assert flood.count([FLOOD_TEXT]) == 1 and "911" in FLOOD_TEXT
    assert flood.count([]) == 2 * FLOOD_LIMIT - 1  # the rest are not answered (no auto-reply loops)
    spammer = line.records.list_conversations(phone=FLOODER)
    stored = sum(len([t for t in line.records.get_conversation(c["id"])["turns"] if t["direction"] == "in"])
                 for c in spammer)
    assert stored == FLOOD_LIMIT  # what was not read is not stored either
    assert all(r[-1].startswith("How old are you?") for r in crowd), "a patient in the crowd was refused"
    outcome = line.latest(CALM)
    assert (outcome["status"], outcome["disposition"]) == ("completed", "routine")
    assert max(calm) < 1.0, f"the calm patient waited {max(calm):.2f}s"
