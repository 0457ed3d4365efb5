"""POST /twilio/sms end to end: signed webhooks over fakeredis, checked through TwiML and the JSON API.

What a patient reads (the <Message>s), what a clinician sees (the JSON API, the alerts) and what
Twilio relies on (status, TwiML, idempotent retries) are asserted; the engine's internals are not.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from telehealth.conversations import TriageLine
from telehealth.logs import JsonFormatter
from telehealth.sessions import Keys
from telehealth.triage import engine
from telehealth.triage.gsm import fits_one_segment
from tests.conftest import PATIENT, Twilio, alerts, api_get, conversation, mentions, messages_of, sms_params

# Nobody is on call in these tests: every page goes to the console, as in embedded mode.
pytestmark = pytest.mark.usefixtures("console")

# The questions a patient who answers "no" to everything is asked, in order.
ALL_NO_PATH = ["age", "chest_pain", "tearing_pain_or_abdominal", "fainted_or_lightheaded",
               "bladder_problem", "bowel_problem", "saddle_numbness", "leg_weakness_both", "foot_drop",
               "major_trauma", "fever", "leg_nerve_symptoms", "history_risk", "risk_signs"]
FIRST_TEXT = "hi, my lower back has been killing me since Monday"
OPT_OUT_WORDS = ["STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"]


def reach(twilio: Twilio, protocol: Any, question: str, phone: str = PATIENT) -> list[str]:
    """Text in and answer "no" (age 45) until `question` is asked; return that last reply."""
    replies = twilio.sms(FIRST_TEXT, phone=phone)
    for asked in ALL_NO_PATH[:ALL_NO_PATH.index(question)]:
        assert replies[-1] == protocol.question(asked).sms
        replies = twilio.sms("45" if asked == "age" else "no", phone=phone)
    assert replies[-1] == protocol.question(question).sms
    return replies


def assert_sms_sized(replies: list[str]) -> None:
    for text in replies:
        assert text and fits_one_segment(text), f"not one GSM-7 segment: {text!r}"


def turn_log(conv: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["direction"], t["text"]) for t in conv["turns"]]


# --- whole conversations -------------------------------------------------------------------

NO9 = ["no"] * 9  # chest pain ... major trauma: the emergency-stage questions
CONVERSATIONS = {
    # name: (texts after the first one, disposition, rule, red flags, outcome)
    "routine": (["45", *NO9, "no", "no", "no", "no"], "routine", "no_red_flags", [], "routine"),
    "urgent fever alone": (["45", *NO9, "yes", "no", "no", "no"], "urgent", "fever_alone", ["fever"],
                           "urgent"),
    "emergency bladder": (["45", "no", "no", "no", "yes"], "emergency", "cauda_equina_bladder",
                          ["bladder_problem"], "emergency_er"),
    "emergency chest pain": (["45", "yes"], "emergency", "chest_pain", ["chest_pain"], "emergency_911"),
    "emergency fever + leg nerve symptoms": (["45", *NO9, "yes", "yes"], "emergency", "neuro_with_fever",
                                             ["fever", "leg_nerve_symptoms"], "emergency_er"),
}


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_a_whole_conversation_ends_in_its_disposition_and_is_recorded_turn_by_turn(
        name: str, twilio: Twilio, client: Any, services: Any, protocol: Any) -> None:
    texts, disposition, rule, red_flags, outcome = CONVERSATIONS[name]
    expected_turns: list[tuple[str, str]] = []
    replies: list[str] = []
    for text in [FIRST_TEXT, *texts]:
        replies = twilio.sms(text)
        assert_sms_sized(replies)
        expected_turns += [("in", text), *[("out", reply) for reply in replies]]

    assert replies == protocol.outcome_messages(outcome, "sms")
    if disposition == "emergency":  # the instruction alone; otherwise the safety-net comes last
        assert len(replies) == 1 and "911" in replies[0] and "?" not in replies[0]
    else:
        assert replies[-1] == protocol.safety_net["sms"] and "911" in replies[-1]
    conv = conversation(client)
    assert {k: conv[k] for k in ("channel", "phone", "status", "disposition", "rule")} == {
        "channel": "sms", "phone": PATIENT, "status": "completed", "disposition": disposition, "rule": rule}
    assert sorted(conv["red_flags"]) == sorted(red_flags)
    assert conv["protocol_version"] == protocol.version
    assert conv["started_at"] and conv["ended_at"]
    assert turn_log(conv) == expected_turns
    if disposition == "routine":
        assert conv["escalation"] is None
        assert alerts(services) == []
    else:
        escalation = conv["escalation"]
        assert escalation["status"] == "pending" and escalation["level"] == disposition
        assert "alert_sent" in [event["kind"] for event in escalation["events"]]
        [alert] = alerts(services)
        assert alert.startswith(disposition.upper()) and mentions(alert)


def test_a_conversation_is_logged_without_the_number_or_what_was_said(
        twilio: Twilio, caplog: pytest.LogCaptureFixture, protocol: Any) -> None:
    caplog.set_level(logging.DEBUG)
    said = ["my back hurts, Jane Roe here", "45", *["no"] * 9, "yes", "no", "no", "no"]
    for text in said:
        twilio.sms(text)
    assert any(getattr(r, "disposition", None) == "urgent" for r in caplog.records)  # it was logged
    for record in caplog.records:
        shown = f"{JsonFormatter().format(record)} {record.__dict__!r}"
        assert not mentions(shown) and "Jane Roe" not in shown


def test_the_emergency_reply_is_the_instruction_alone(twilio: Twilio, protocol: Any) -> None:
    reach(twilio, protocol, "bladder_problem")
    [instruction] = twilio.sms("yes")
    assert "911" in instruction and "Do not drive yourself" in instruction
    assert "?" not in instruction and "Reply" not in instruction


# --- reading answers generously -----------------------------------------------------------

@pytest.mark.parametrize("answer, is_yes", [
    ("y", True), ("yeah", True), ("yep", True), ("yes since yesterday", True), ("YES!", True),
    ("1", True), ("Yes.", True),
    ("n", False), ("nope", False), ("nah", False), ("not really", False), ("2", False), ("NO.", False),
])
def test_everyday_yes_and_no_are_understood(
        answer: str, is_yes: bool, twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    replies = twilio.sms(answer)
    assert replies == [protocol.question("leg_nerve_symptoms").sms]  # no re-ask, nothing "treated as"
    assert ("fever" in conversation(client)["red_flags"]) is is_yes


@pytest.mark.parametrize("answer", ["45", "I'm 62", "sixty two", "62 years old", "Sixty-two."])
def test_an_age_in_digits_or_words_is_understood(
        answer: str, twilio: Twilio, client: Any, services: Any, protocol: Any) -> None:
    reach(twilio, protocol, "age")
    assert twilio.sms(answer) == [protocol.question("chest_pain").sms]
    facts = services.records.get_conversation(conversation(client)["id"])["facts"]
    assert facts["age"] == (45 if answer == "45" else 62)


@pytest.mark.parametrize("answer", ["maybe", "not sure", "kind of", "I think so", "a little"])
def test_a_hedged_answer_counts_as_yes_and_the_patient_is_told(
        answer: str, twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    assert twilio.sms(answer) == [protocol.text("treated_as_yes", "sms"),
                                  protocol.question("leg_nerve_symptoms").sms]
    assert conversation(client)["red_flags"] == ["fever"]


def test_a_hedge_to_an_emergency_question_gets_the_instruction_first(twilio: Twilio, protocol: Any) -> None:
    reach(twilio, protocol, "bladder_problem")
    assert twilio.sms("maybe a little") == protocol.outcome_messages("emergency_er", "sms")


def test_an_unreadable_answer_is_asked_again_once_then_counts_as_yes(
        twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    assert twilio.sms("purple") == [protocol.text("not_understood", "sms"), protocol.question("fever").sms]
    assert twilio.sms("banana") == [protocol.text("treated_as_yes", "sms"),
                                    protocol.question("leg_nerve_symptoms").sms]
    assert conversation(client)["red_flags"] == ["fever"]


# --- keywords ------------------------------------------------------------------------------

@pytest.mark.parametrize("word", [*OPT_OUT_WORDS, "stop", "Stop."])
def test_an_opt_out_word_ends_the_conversation_silently_and_is_recorded(
        word: str, twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "chest_pain")
    response = twilio.sms_response(word)
    assert messages_of(response) == []  # an empty <Response/>: Twilio sends its own confirmation
    conv = conversation(client)
    assert conv["status"] == "opted_out" and conv["ended_at"]
    assert turn_log(conv)[-1] == ("in", word)
    assert conv["escalation"] is None


def test_after_stop_nothing_is_sent_until_start_which_resumes_the_interrupted_question(
        twilio: Twilio, client: Any, clock: Any, protocol: Any) -> None:
    reach(twilio, protocol, "tearing_pain_or_abdominal")
    twilio.sms("STOP")
    assert twilio.sms("hello?") == []
    clock.advance(minutes=45)  # longer than the session timeout: still opted out
    assert twilio.sms("are you there") == []
    conv = conversation(client)
    assert conv["status"] == "opted_out"
    assert turn_log(conv)[-3:] == [("in", "STOP"), ("in", "hello?"), ("in", "are you there")]
    assert len(api_get(client, f"/api/conversations?phone={PATIENT}").get_json()["conversations"]) == 1

    assert twilio.sms("START") == [protocol.text("resumed", "sms"),
                                   protocol.question("tearing_pain_or_abdominal").sms]
    assert conversation(client)["status"] == "active"
    assert twilio.sms("no") == [protocol.question("fainted_or_lightheaded").sms]


def test_opting_out_after_an_urgent_level_answer_is_escalated(
        twilio: Twilio, client: Any, services: Any, protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    twilio.sms("yes")
    assert twilio.sms("STOP") == []
    conv = conversation(client)
    assert conv["status"] == "opted_out" and conv["disposition"] == "urgent"
    assert conv["escalation"]["status"] == "pending"
    [alert] = alerts(services)
    assert "stopped replying" in alert and mentions(alert)


def test_a_retried_stop_changes_nothing(
        twilio: Twilio, client: Any, clock: Any, services: Any, protocol: Any) -> None:
    reach(twilio, protocol, "chest_pain")
    stop = sms_params("STOP", sid="SM" + "8" * 32)
    assert messages_of(twilio.post("/twilio/sms", stop)) == []
    before = conversation(client)
    clock.advance(minutes=5)
    services.sessions.client.delete(Keys.reply.format(sid=stop["MessageSid"]))  # the cached reply is gone
    assert messages_of(twilio.post("/twilio/sms", stop)) == []
    assert conversation(client) == before


def test_stop_as_the_first_text_is_recorded_as_an_opt_out(twilio: Twilio, client: Any) -> None:
    assert twilio.sms("STOP") == []
    assert twilio.sms("what is this") == []
    conv = conversation(client)
    assert conv["status"] == "opted_out"
    assert turn_log(conv) == [("in", "STOP"), ("in", "what is this")]


def test_help_says_what_the_line_is_and_repeats_the_question_without_advancing(
        twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "chest_pain")
    replies = twilio.sms("HELP")
    assert replies == [protocol.text("help", "sms"), protocol.question("chest_pain").sms]
    assert "911" in replies[0] and "back pain" in replies[0].lower()
    assert_sms_sized(replies)
    assert twilio.sms("no") == [protocol.question("tearing_pain_or_abdominal").sms]
    assert conversation(client)["status"] == "active"


def test_help_as_the_first_text_explains_then_starts(twilio: Twilio, protocol: Any) -> None:
    assert twilio.sms("help") == [protocol.text("help", "sms"), protocol.text("greeting", "sms"),
                                  protocol.question("age").sms]


@pytest.mark.parametrize("answered, escalated", [("no", False), ("yes", True)])
def test_restart_starts_a_new_conversation_and_closes_the_old_one(
        answered: str, escalated: bool, twilio: Twilio, client: Any, services: Any,
        protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    twilio.sms(answered)
    assert twilio.sms("RESTART") == [protocol.text("greeting", "sms"), protocol.question("age").sms]
    new, old = conversation(client, index=0), conversation(client, index=1)
    assert new["status"] == "active" and new["id"] != old["id"]
    assert old["status"] == "abandoned"
    assert (old["escalation"] is not None) is escalated
    assert len(alerts(services)) == int(escalated)
    assert twilio.sms("50") == [protocol.question("chest_pain").sms]


# --- silence and the session timeout -------------------------------------------------------

@pytest.mark.parametrize("answered, escalated", [("yes", True), ("no", False)])
def test_a_text_after_30_quiet_minutes_starts_over_and_the_old_conversation_is_abandoned(
        answered: str, escalated: bool, twilio: Twilio, client: Any, clock: Any, services: Any,
        protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    twilio.sms(answered)  # fever yes is an urgent-level answer
    clock.advance(minutes=31)
    assert twilio.sms("hello again") == [protocol.text("greeting", "sms"), protocol.question("age").sms]
    new, old = conversation(client, index=0), conversation(client, index=1)
    assert new["status"] == "active" and turn_log(new)[0] == ("in", "hello again")
    assert old["status"] == "abandoned" and old["ended_at"]
    if escalated:
        assert old["disposition"] == "urgent" and old["escalation"]["status"] == "pending"
        [alert] = alerts(services)
        assert "URGENT" in alert and "stopped replying" in alert and mentions(alert)
    else:
        assert old["escalation"] is None and old["disposition"] is None
        assert alerts(services) == []


def test_a_reply_within_30_minutes_carries_on(
        twilio: Twilio, client: Any, clock: Any, protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    clock.advance(minutes=29)
    assert twilio.sms("no") == [protocol.question("leg_nerve_symptoms").sms]
    assert len(api_get(client, f"/api/conversations?phone={PATIENT}").get_json()["conversations"]) == 1


@pytest.mark.parametrize("answered, escalated", [("yes", True), ("no", False)])
def test_sweep_closes_idle_conversations_the_same_way(
        answered: str, escalated: bool, twilio: Twilio, client: Any, clock: Any, services: Any,
        protocol: Any) -> None:
    reach(twilio, protocol, "fever")
    twilio.sms(answered)
    line = TriageLine(services)
    clock.advance(minutes=10)
    assert line.sweep_abandoned() == 0
    assert conversation(client)["status"] == "active"

    clock.advance(minutes=21)
    assert line.sweep_abandoned() == 1
    conv = conversation(client)
    assert conv["status"] == "abandoned"
    assert (conv["escalation"] is not None) is escalated
    assert len(alerts(services)) == int(escalated)
    assert line.sweep_abandoned() == 0  # closed once

    clock.advance(hours=2)
    assert twilio.sms("sorry, I was busy") == [protocol.text("greeting", "sms"),
                                               protocol.question("age").sms]
    old = conversation(client, index=1)
    assert (old["id"], old["status"], old["ended_at"]) == (conv["id"], "abandoned", conv["ended_at"])
    assert len(alerts(services)) == int(escalated)


# --- after the end --------------------------------------------------------------------------

def finish_routine(twilio: Twilio, protocol: Any) -> None:
    reach(twilio, protocol, "risk_signs")
    assert twilio.sms("no") == protocol.outcome_messages("routine", "sms")


def test_a_text_after_a_finished_conversation_says_the_check_is_done(
        twilio: Twilio, client: Any, protocol: Any) -> None:
    finish_routine(twilio, protocol)
    assert twilio.sms("thanks!") == [protocol.text("after_end", "sms")]
    conv = conversation(client)
    assert conv["status"] == "completed" and conv["disposition"] == "routine"
    assert turn_log(conv)[-2:] == [("in", "thanks!"), ("out", protocol.text("after_end", "sms"))]


def test_a_volunteered_emergency_after_a_finished_routine_check_gets_the_instruction(
        twilio: Twilio, client: Any, services: Any, protocol: Any) -> None:
    finish_routine(twilio, protocol)
    assert twilio.sms("I can't pee now") == protocol.outcome_messages("emergency_er", "sms")
    new, old = conversation(client, index=0), conversation(client, index=1)
    assert old["disposition"] == "routine"
    assert new["disposition"] == "emergency" and new["rule"] == "cauda_equina_bladder"
    assert turn_log(new)[0] == ("in", "I can't pee now")
    assert new["escalation"]["status"] == "pending"
    [alert] = alerts(services)
    assert alert.startswith("EMERGENCY") and mentions(alert)


@pytest.mark.parametrize("first_text, rule", [
    ("my legs gave out and I can't pee", "cauda_equina_bladder"),
    ("it's numb down there", "cauda_equina_saddle"),
    ("I passed out and my back hurts", "collapse_or_shock"),
])
def test_an_emergency_in_the_first_text_gets_the_instruction_at_once(
        first_text: str, rule: str, twilio: Twilio, client: Any) -> None:
    [instruction] = twilio.sms(first_text)
    assert "911" in instruction and "?" not in instruction
    conv = conversation(client)
    assert conv["disposition"] == "emergency" and conv["rule"] == rule


# --- Twilio retries and concurrency ----------------------------------------------------------

@pytest.mark.parametrize("reply_cache", ["kept", "lost"])
def test_a_retried_webhook_gets_the_same_reply_and_changes_nothing(
        reply_cache: str, twilio: Twilio, client: Any, services: Any, protocol: Any) -> None:
    reach(twilio, protocol, "chest_pain")
    first = twilio.post("/twilio/sms", sms_params("no", sid="SM" + "7" * 32))
    if reply_cache == "lost":  # e.g. Redis restarted between the try and the retry
        services.sessions.client.delete(Keys.reply.format(sid="SM" + "7" * 32))
    again = twilio.post("/twilio/sms", sms_params("no", sid="SM" + "7" * 32))
    assert again.data == first.data
    assert messages_of(again) == [protocol.question("tearing_pain_or_abdominal").sms]
    assert turn_log(conversation(client))[-2:] == [("in", "no"), ("out", messages_of(first)[0])]
    assert twilio.sms("no") == [protocol.question("fainted_or_lightheaded").sms]


def test_two_texts_at_once_from_one_number_are_taken_one_after_the_other(
        app: Any, client: Any, monkeypatch: pytest.MonkeyPatch, protocol: Any) -> None:
    reach(Twilio(client), protocol, "chest_pain")
    real_resume = engine.resume

    def slow_resume(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # widens the window in which unserialised turns would interleave
        return real_resume(*args, **kwargs)

    monkeypatch.setattr(engine, "resume", slow_resume)
    replies: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def text(sid: str) -> None:
        poster = Twilio(app.test_client())
        start.wait()
        replies[sid] = messages_of(poster.post("/twilio/sms", sms_params("no", sid=sid)))

    threads = [threading.Thread(target=text, args=(f"SM{n:032d}",)) for n in (901, 902)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    second = protocol.question("tearing_pain_or_abdominal").sms
    third = protocol.question("fainted_or_lightheaded").sms
    assert sorted(replies.values()) == sorted([[second], [third]])  # both answered, each once
    assert turn_log(conversation(client))[-4:] == [
        ("in", "no"), ("out", second), ("in", "no"), ("out", third)]


@pytest.mark.parametrize("body", [
    "no 😬 my back 🔥",
    "Nope — ça va, gracias ñandú",
    "no\nreally not\tat all",
    "no " + "x" * 1697,
])
def test_the_stored_turn_is_exactly_what_arrived(
        body: str, twilio: Twilio, client: Any, protocol: Any) -> None:
    reach(twilio, protocol, "chest_pain")
    twilio.sms(body)
    assert [t["text"] for t in conversation(client)["turns"] if t["direction"] == "in"][-1] == body


# --- the live session lost (Redis flushed or restarted empty) ------------------------------


def test_a_lost_session_is_picked_up_from_the_durable_record(twilio: Twilio, client: Any, services: Any) -> None:
    for body in ("my back hurts", "45", "no"):  # narrative, age, chest pain
        twilio.sms(body)
    services.sessions.client.flushall()

    reply = twilio.sms("no")  # the answer to the aortic question the patient last saw

    assert reply[0].startswith("Sorry, our system lost its place")
    assert "fainted" in reply[-1]
    found = api_get(client, f"/api/conversations?phone={PATIENT}").get_json()["conversations"]
    assert len(found) == 1 and found[0]["status"] == "active"


def test_an_emergency_answer_after_a_lost_session_is_the_instruction_alone(
        twilio: Twilio, services: Any) -> None:
    for body in ("my back hurts", "45", "no"):
        twilio.sms(body)
    services.sessions.client.flushall()

    reply = twilio.sms("yes")  # yes to tearing pain

    assert reply[0].startswith("Call 911 now")
    assert not any("?" in m for m in reply)
