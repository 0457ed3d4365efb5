"""Voice webhooks end to end: a caller driven the way Twilio drives a call, TwiML read as XML.

The `call` fixture answers through <Gather action>, stays silent by following <Redirect>, and
retries by re-sending a request; the JSON API and the alerts show what a clinician gets.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import PATIENT, Call, Twilio, VoiceTurn, alerts, api_get, conversation, mentions

# Nobody is on call in these tests: every page goes to the console, as in embedded mode.
pytestmark = pytest.mark.usefixtures("console")

ALL_NO_PATH = ["age", "chest_pain", "tearing_pain_or_abdominal", "fainted_or_lightheaded",
               "bladder_problem", "bowel_problem", "saddle_numbness", "leg_weakness_both", "foot_drop",
               "major_trauma", "fever", "leg_nerve_symptoms", "history_risk", "risk_signs"]


def question(protocol: Any, qid: str) -> str:
    """A question as read on the phone: its voice wording and how to answer it."""
    asked = protocol.question(qid)
    hint = protocol.text("number_hint" if asked.kind == "number" else "yes_no_hint", "voice")
    return f"{asked.voice} {hint}"


def reach(call: Call, protocol: Any, qid: str) -> VoiceTurn:
    """Call in and answer no (age 45) until `qid` is asked."""
    turn = call.start()
    for asked in ALL_NO_PATH[:ALL_NO_PATH.index(qid)]:
        assert turn.prompt == question(protocol, asked)
        turn = call.press("45#" if asked == "age" else "2")
    assert turn.prompt == question(protocol, qid)
    return turn


def step_of(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert parts.path == "/twilio/voice/answer"
    return parse_qs(parts.query)


def in_turns(conv: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in conv["turns"] if t["direction"] == "in"]


# --- the shape of each response --------------------------------------------------------------

def test_the_call_opens_with_the_greeting_then_gathers_the_first_answer(call: Call, protocol: Any) -> None:
    turn = call.start()
    assert turn.verbs == ["Say", "Gather", "Redirect"]
    assert turn.said[0] == protocol.text("greeting", "voice") and "911" in turn.said[0]
    gather = turn.gather
    assert gather is not None
    assert gather.get("input") == "dtmf speech" and gather.get("method") == "POST"
    assert [child.tag for child in gather] == ["Say"]
    assert turn.prompt == question(protocol, "age")
    assert gather.get("finishOnKey") == "#" and gather.get("numDigits") is None  # a number: keys then #
    action, redirect = step_of(gather.get("action") or ""), step_of(turn.redirect.text or "")
    assert action["step"] == redirect["step"]  # silence answers the same step
    assert turn.redirect.get("method") == "POST"


def test_a_yes_no_question_takes_one_key(call: Call, protocol: Any) -> None:
    turn = reach(call, protocol, "chest_pain")
    assert turn.gather is not None
    assert turn.gather.get("numDigits") == "1" and turn.gather.get("input") == "dtmf speech"
    assert turn.verbs == ["Gather", "Redirect"]


def test_every_answer_posts_to_the_next_step(call: Call, protocol: Any) -> None:
    reach(call, protocol, "fever")
    steps = [int(step_of(t.gather.get("action") or "")["step"][0])
             for t in call.turns if t.gather is not None]
    assert len(steps) == len(call.turns) and steps == list(range(steps[0], steps[0] + len(steps)))


# --- answers -------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, emergency", [
    ("1", True), ("say:Yes.", True), ("say:yeah I do", True),
    ("2", False), ("say:Nope.", False), ("say:no", False),
])
def test_keys_and_speech_answer_a_yes_no_question(
        answer: str, emergency: bool, call: Call, protocol: Any) -> None:
    reach(call, protocol, "chest_pain")
    turn = call.answer(answer)
    if emergency:
        assert turn.said == protocol.outcome_messages("emergency_911", "voice") * 2 and turn.hung_up
    else:
        assert turn.said == [question(protocol, "tearing_pain_or_abdominal")]


def test_speech_is_recorded_with_its_confidence(call: Call, client: Any, protocol: Any) -> None:
    reach(call, protocol, "chest_pain")
    call.say("Nope.", confidence=0.87)
    last = in_turns(conversation(client))[-1]
    assert (last["text"], last["speech"], last["confidence"]) == ("Nope.", "Nope.", 0.87)


def test_keyed_digits_are_recorded(call: Call, client: Any, protocol: Any) -> None:
    call.start()
    call.press("62#")
    assert in_turns(conversation(client))[-1]["digits"] == "62#"


def test_mumbled_speech_is_asked_again(call: Call, protocol: Any) -> None:
    reach(call, protocol, "chest_pain")
    turn = call.say("yes", confidence=0.1)
    assert turn.said == [protocol.text("not_understood", "voice"), question(protocol, "chest_pain")]


@pytest.mark.parametrize("qid, repeat_key", [("chest_pain", "9"), ("age", "*")])
def test_the_repeat_key_reads_the_question_again_without_moving_on(
        qid: str, repeat_key: str, call: Call, client: Any, protocol: Any) -> None:
    reach(call, protocol, qid)
    turn = call.press(repeat_key)
    assert turn.said == [question(protocol, qid)] and turn.gather is not None
    turn = call.press("45#" if qid == "age" else "2")
    assert turn.prompt == question(protocol, ALL_NO_PATH[ALL_NO_PATH.index(qid) + 1])
    assert conversation(client)["red_flags"] == []


# --- silence ------------------------------------------------------------------------------------

@pytest.mark.parametrize("qid, after_silence", [
    ("chest_pain", "emergency"),            # silence on a red-flag question counts as yes
    ("age", "skipped"),                     # the age question's silence rule: go on without it
])
def test_silence_is_asked_about_twice_then_the_question_rule_applies(
        qid: str, after_silence: str, call: Call, client: Any, protocol: Any) -> None:
    reach(call, protocol, qid)
    for _ in range(2):
        turn = call.silence()
        assert turn.said == [protocol.text("no_answer", "voice"), question(protocol, qid)]
        assert not turn.hung_up
    turn = call.silence()
    if after_silence == "emergency":
        assert turn.said == protocol.outcome_messages("emergency_911", "voice") * 2 and turn.hung_up
        assert conversation(client)["disposition"] == "emergency"
    else:
        assert turn.said == [protocol.text("skipped", "voice"), question(protocol, "chest_pain")]
    assert [t["text"] for t in in_turns(conversation(client))][-3:] == ["(silence)"] * 3


def test_silence_to_an_urgent_level_question_counts_as_yes_and_the_caller_is_told(
        call: Call, client: Any, protocol: Any) -> None:
    reach(call, protocol, "fever")
    call.answer("silence", "silence")
    turn = call.silence()
    assert turn.said == [protocol.text("treated_as_yes", "voice"), question(protocol, "leg_nerve_symptoms")]
    assert conversation(client)["red_flags"] == ["fever"]


# --- endings -------------------------------------------------------------------------------------

def test_the_emergency_instruction_is_said_twice_then_the_call_ends(call: Call, protocol: Any) -> None:
    reach(call, protocol, "bladder_problem")
    turn = call.press("1")
    [instruction] = protocol.outcome_messages("emergency_er", "voice")
    assert turn.verbs == ["Say", "Pause", "Say", "Hangup"]
    assert turn.said == [instruction, instruction]
    assert "911" in instruction and "?" not in instruction


VOICE_CALLS = {
    # name: (inputs after the call starts, disposition, rule, red flags, outcome)
    "routine": (["45#", *["2"] * 13], "routine", "no_red_flags", [], "routine"),
    "urgent": (["45#", *["2"] * 9, "1", "2", "say:no", "2"], "urgent", "fever_alone", ["fever"], "urgent"),
    "emergency": (["say:sixty", "2", "say:No.", "2", "1"], "emergency", "cauda_equina_bladder",
                  ["bladder_problem"], "emergency_er"),
}


@pytest.mark.parametrize("name", VOICE_CALLS)
def test_a_whole_call_ends_in_its_disposition_with_words_then_a_hang_up(
        name: str, call: Call, client: Any, services: Any, protocol: Any) -> None:
    inputs, disposition, rule, red_flags, outcome = VOICE_CALLS[name]
    call.start()
    turn = call.answer(*inputs)
    messages = protocol.outcome_messages(outcome, "voice")
    assert turn.hung_up and "Gather" not in turn.verbs
    if disposition == "emergency":
        assert turn.said == messages * 2
    else:
        assert turn.said[:len(messages)] == messages and turn.said[-1] == "Goodbye."
        assert protocol.safety_net["voice"] in turn.said
    for played in call.turns:  # never a silent hang-up, never a dead end
        assert played.said and (played.hung_up or played.gather is not None)

    conv = conversation(client)
    assert {k: conv[k] for k in ("channel", "phone", "status", "disposition", "rule")} == {
        "channel": "voice", "phone": PATIENT, "status": "completed", "disposition": disposition,
        "rule": rule}
    assert sorted(conv["red_flags"]) == sorted(red_flags)
    assert conv["protocol_version"] == protocol.version
    assert len(in_turns(conv)) == len(inputs)
    assert [t["text"] for t in conv["turns"] if t["direction"] == "out"][-len(messages):] == messages
    if disposition == "routine":
        assert conv["escalation"] is None and alerts(services) == []
    else:
        assert conv["escalation"]["status"] == "pending"
        [alert] = alerts(services)
        assert alert.startswith(disposition.upper()) and mentions(alert)

    assert call.status("completed").status_code in (200, 204)  # Twilio's callback after the hang-up
    assert conversation(client)["status"] == "completed"
    assert len(alerts(services)) == int(disposition != "routine")


# --- retries -------------------------------------------------------------------------------------

@pytest.mark.parametrize("retried", ["first request", "answer", "silence"])
def test_a_retried_step_returns_the_same_twiml_and_records_one_turn(
        retried: str, call: Call, client: Any, protocol: Any) -> None:
    if retried == "first request":
        first = call.start()
    else:
        reach(call, protocol, "chest_pain")
        first = call.press("2") if retried == "answer" else call.silence()
    again = call.retry()
    assert again.response.data == first.response.data
    assert len(in_turns(conversation(client))) == (0 if retried == "first request" else 2)
    assert len(api_get(client, f"/api/conversations?phone={PATIENT}").get_json()["conversations"]) == 1
    turn = call.press("45#" if retried == "first request" else "2")
    expected = {"first request": "chest_pain", "answer": "fainted_or_lightheaded",
                "silence": "tearing_pain_or_abdominal"}[retried]
    assert turn.prompt == question(protocol, expected)


# --- the status callback --------------------------------------------------------------------------

@pytest.mark.parametrize("fever, escalated", [("1", True), ("2", False)])
@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_call_that_ends_mid_triage_is_closed_and_escalated_if_needed(
        fever: str, escalated: bool, status: str, call: Call, client: Any, services: Any,
        protocol: Any) -> None:
    reach(call, protocol, "fever")
    call.press(fever)
    response = call.status(status)
    assert response.status_code in (200, 204)
    conv = conversation(client)
    assert conv["status"] == "abandoned" and conv["ended_at"]
    if escalated:
        assert conv["disposition"] == "urgent" and conv["escalation"]["status"] == "pending"
        [alert] = alerts(services)
        assert "stopped replying" in alert and mentions(alert)
    else:
        assert conv["escalation"] is None and alerts(services) == []
    assert call.status(status).status_code in (200, 204)  # Twilio may send it twice
    assert len(alerts(services)) == int(escalated)


def test_a_status_callback_while_the_call_goes_on_changes_nothing(
        call: Call, client: Any, protocol: Any) -> None:
    reach(call, protocol, "chest_pain")
    assert call.status("in-progress").status_code in (200, 204)
    assert conversation(client)["status"] == "active"
    assert call.press("2").prompt == question(protocol, "tearing_pain_or_abdominal")


def test_a_status_callback_for_an_unknown_call_is_accepted(twilio: Twilio, client: Any) -> None:
    stranger = Call(twilio, sid="CA" + "9" * 32)
    assert 200 <= stranger.status("completed").status_code < 300
    assert api_get(client, f"/api/conversations?phone={PATIENT}").get_json() == {"conversations": []}
