"""Live conversation state in Redis: key names from one place, a TTL on every key, clear errors, a lock."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import fakeredis
import pytest

from telehealth.sessions import KEY_PREFIX, Keys, Session, Sessions, SessionUnavailable
from tests.conftest import PATIENT, Call, Twilio, broken_redis

TEMPLATES = [value for name, value in vars(Keys).items() if not name.startswith("_")]
TELEHEALTH = Path(__file__).resolve().parents[2] / "telehealth"


def key_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(template)) + "$")


@pytest.fixture
def sessions() -> Sessions:
    return Sessions(fakeredis.FakeRedis(), ttl_seconds=600, lock_seconds=1.0)


def test_every_key_the_line_writes_is_named_in_keys_and_expires(
        twilio: Twilio, services: Any, protocol: Any) -> None:
    twilio.sms("my back hurts")
    twilio.sms("45")
    Call(twilio).start()
    client = services.sessions.client
    keys = [key.decode() for key in client.keys("*")]
    assert keys, "the line kept no state"
    patterns = [key_pattern(template) for template in TEMPLATES]
    for key in keys:
        assert any(p.match(key) for p in patterns), f"{key} is not named in sessions.Keys"
        assert 0 < client.ttl(key) <= services.settings.session_ttl_seconds, f"{key} never expires"
    assert {Keys.sms.format(phone=PATIENT), Keys.call.format(call_sid="CA" + "1" * 32)} <= set(keys)


def test_no_other_module_spells_a_redis_key() -> None:
    spelled = [path.relative_to(TELEHEALTH) for path in TELEHEALTH.rglob("*.py")
               if path.name != "sessions.py" and re.search(rf"""["']{KEY_PREFIX}:""", path.read_text())]
    assert spelled == []


def test_a_session_survives_the_round_trip(sessions: Sessions) -> None:
    saved = Session(7, {"current": "fever", "facts": {"age": 45.0}}, "2026-11-26T12:00:00+00:00",
                    step=3, last_reply={"said": ["hi"]})
    sessions.save_sms(PATIENT, saved)
    sessions.save_call("CA1", saved)
    assert sessions.load_sms(PATIENT) == saved and sessions.load_call("CA1") == saved
    sessions.drop_sms(PATIENT)
    sessions.drop_call("CA1")
    assert sessions.load_sms(PATIENT) is None and sessions.load_call("CA1") is None


def test_a_remembered_reply_is_found_by_its_sid_and_expires(sessions: Sessions) -> None:
    assert sessions.reply_for("SM1") is None
    sessions.remember_reply("SM1", ["one", "two"])
    assert sessions.reply_for("SM1") == ["one", "two"]
    assert 0 < sessions.client.ttl(Keys.reply.format(sid="SM1")) <= 600


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_session_must_expire(ttl: int) -> None:
    with pytest.raises(ValueError):
        Sessions(fakeredis.FakeRedis(), ttl_seconds=ttl)


SESSION = Session(1, {}, "2026-11-26T12:00:00+00:00")
CALLS: dict[str, Callable[[Sessions], Any]] = {
    "load_sms": lambda s: s.load_sms(PATIENT),
    "save_sms": lambda s: s.save_sms(PATIENT, SESSION),
    "drop_sms": lambda s: s.drop_sms(PATIENT),
    "load_call": lambda s: s.load_call("CA1"),
    "save_call": lambda s: s.save_call("CA1", SESSION),
    "drop_call": lambda s: s.drop_call("CA1"),
    "remember_reply": lambda s: s.remember_reply("SM1", ["hi"]),
    "reply_for": lambda s: s.reply_for("SM1"),
    "lock": lambda s: s.lock(PATIENT).__enter__(),
}


@pytest.mark.parametrize("call", CALLS)
def test_redis_errors_become_session_unavailable_without_patient_data(call: str) -> None:
    with pytest.raises(SessionUnavailable) as raised:
        CALLS[call](Sessions(broken_redis(), ttl_seconds=60, lock_seconds=0.1))
    assert PATIENT not in str(raised.value)


def test_ping_says_whether_redis_answers(sessions: Sessions) -> None:
    assert sessions.ping() is True
    assert Sessions(broken_redis(), ttl_seconds=60).ping() is False


def test_the_lock_lets_one_turn_through_at_a_time() -> None:
    server = fakeredis.FakeServer()
    events: list[str] = []
    inside = threading.Event()

    def turn(name: str, hold: float) -> None:
        sessions = Sessions(fakeredis.FakeRedis(server=server), ttl_seconds=60, lock_seconds=5)
        with sessions.lock(PATIENT):
            events.append(f"{name} in")
            inside.set()
            time.sleep(hold)
            events.append(f"{name} out")

    first = threading.Thread(target=turn, args=("first", 0.3))
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=turn, args=("second", 0))
    second.start()
    first.join(5)
    second.join(5)
    assert events == ["first in", "first out", "second in", "second out"]


def test_a_lock_held_too_long_is_reported_not_waited_on_forever() -> None:
    server = fakeredis.FakeServer()
    holder = Sessions(fakeredis.FakeRedis(server=server), ttl_seconds=60, lock_seconds=5)
    waiter = Sessions(fakeredis.FakeRedis(server=server), ttl_seconds=60, lock_seconds=0.2)
    with holder.lock(PATIENT):
        started = time.monotonic()
        with pytest.raises(SessionUnavailable):
            with waiter.lock(PATIENT):
                pass
        assert time.monotonic() - started < 2


def test_locks_for_different_numbers_do_not_block_each_other(sessions: Sessions) -> None:
    held = {Keys.lock.format(who=who).encode() for who in (PATIENT, "+16175550199", "CA1")}
    with sessions.lock(PATIENT), sessions.lock("+16175550199"), sessions.lock("CA1"):
        assert set(sessions.client.keys(f"{KEY_PREFIX}:lock:*")) == held
    assert sessions.client.keys(f"{KEY_PREFIX}:lock:*") == []  # released on the way out


def test_a_lock_that_expired_under_its_holder_does_not_fail_the_turn() -> None:
    sessions = Sessions(fakeredis.FakeRedis(), ttl_seconds=60, lock_seconds=0.1)
    with sessions.lock(PATIENT):
        time.sleep(0.2)  # longer than the lock: Redis has already freed it
    with sessions.lock(PATIENT):
        assert sessions.client.exists(Keys.lock.format(who=PATIENT)) == 1
