"""The triage engine as a patient and a clinician meet it: what is asked, in what order, and what is said."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from telehealth.triage import engine
from telehealth.triage.checker import is_emergency_instruction
from telehealth.triage.engine import EngineError, Input, Reply, State
from telehealth.triage.gsm import fits_one_segment
from telehealth.triage.protocol import Level, Protocol

CHANNELS = ["sms", "voice"]
EMERGENCY_STAGE = [
    "age", "chest_pain", "tearing_pain_or_abdominal", "fainted_or_lightheaded", "bladder_problem",
    "bowel_problem", "saddle_numbness", "leg_weakness_both", "foot_drop", "major_trauma",
]
# Text that volunteers exactly one fact, for playing a combination in the other order.
VOLUNTEER = {
    "fever": "I've had a fever since Sunday",
    "iv_drug_use": "I used to inject heroin",
    "infection_risk": "HIV positive, on meds",
    "leg_nerve_symptoms": "tingling down my leg",
    "cancer_history": "I had breast cancer",
    "trauma": "I slipped on ice",
}


@dataclass
class Conversation:
    """A scripted patient: yes to `yes`, no to everything else, a fixed age."""

    protocol: Protocol
    channel: str
    yes: set[str] = field(default_factory=set)
    age: int = 45
    replies: list[Reply] = field(default_factory=list)

    @property
    def asked(self) -> list[str]:
        return [r.question.id for r in self.replies if r.question is not None]

    @property
    def last(self) -> Reply:
        return self.replies[-1]

    def start(self, text: str = "") -> Conversation:
        self.replies.append(engine.start(self.protocol, self.channel, text))
        return self

    def answer(self, given: Input) -> Reply:
        self.replies.append(engine.resume(self.protocol, self.last.state, given))
        return self.last

    def play(self) -> Conversation:
        while not self.last.state.is_done:
            assert len(self.replies) < 60, self.asked
            question = self.last.question
            assert question is not None
            self.answer(age_input(self.channel, self.age) if question.is_number
                        else yes_or_no(self.channel, question.id in self.yes))
        return self


def age_input(channel: str, age: int = 45) -> Input:
    return Input(digits=f"{age}#") if channel == "voice" else Input(text=str(age))


def yes_or_no(channel: str, yes: bool) -> Input:
    if channel == "voice":
        return Input(digits="1" if yes else "2")
    return Input(text="yes" if yes else "no")


def said(reply: Reply) -> str:
    return "\n".join(reply.messages)


def at_question(protocol: Protocol, channel: str, question_id: str) -> Reply:
    """A conversation that has answered no to everything before `question_id` and is now asking it."""
    talk = Conversation(protocol, channel).start()
    while talk.last.question is not None and talk.last.question.id != question_id:
        talk.answer(age_input(channel) if talk.last.question.is_number else yes_or_no(channel, False))
    assert talk.last.question is not None, f"{question_id} was never asked"
    return talk.last


# ---- order -------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
def test_most_dangerous_questions_come_first(protocol: Protocol, channel: str) -> None:
    talk = Conversation(protocol, channel).start().play()
    assert talk.asked == [*EMERGENCY_STAGE, "fever", "leg_nerve_symptoms", "history_risk", "risk_signs"]


@pytest.mark.parametrize(("yes", "after_fever_and_neuro"), [
    ({"fever"}, ["iv_drug_use", "infection_risk"]),
    ({"leg_nerve_symptoms"},
     ["leg_weakness_one", "iv_drug_use", "infection_risk", "cancer_history", "trauma", "weight_night_or_bones"]),
])
def test_a_yes_to_fever_or_nerve_symptoms_asks_the_combination_partners_next(
    protocol: Protocol, yes: set[str], after_fever_and_neuro: list[str]
) -> None:
    talk = Conversation(protocol, "sms", yes=yes).start().play()
    assert talk.asked == [*EMERGENCY_STAGE, "fever", "leg_nerve_symptoms", *after_fever_and_neuro]
    assert talk.last.state.disposition != "emergency"


# ---- emergencies -------------------------------------------------------------------------------

CALL_911 = "Call 911 now."
GO_TO_ER = "This may be an emergency. Call 911 or go to the nearest emergency room now."
EMERGENCY_QUESTIONS = [
    ("chest_pain", "chest_pain", CALL_911),
    ("tearing_pain_or_abdominal", "aortic_pain", CALL_911),
    ("fainted_or_lightheaded", "collapse_or_shock", CALL_911),
    ("bladder_problem", "cauda_equina_bladder", GO_TO_ER),
    ("bowel_problem", "cauda_equina_bowel", GO_TO_ER),
    ("saddle_numbness", "cauda_equina_saddle", GO_TO_ER),
    ("leg_weakness_both", "weakness_both_legs", GO_TO_ER),
    ("foot_drop", "foot_drop", GO_TO_ER),
    ("major_trauma", "major_trauma", GO_TO_ER),
]


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("question", "rule", "instruction"), EMERGENCY_QUESTIONS)
def test_a_yes_to_an_emergency_question_gives_the_instruction_and_asks_nothing_more(
    protocol: Protocol, channel: str, question: str, rule: str, instruction: str
) -> None:
    asked = at_question(protocol, channel, question)
    reply = engine.resume(protocol, asked.state, yes_or_no(channel, True))
    assert (reply.state.disposition, reply.state.rule) == ("emergency", rule)
    assert reply.messages[0].startswith(instruction)
    assert "Do not drive yourself." in said(reply)
    assert reply.prompt is None and reply.question is None and "?" not in said(reply)
    assert is_emergency_instruction(reply.messages)


# Ways a patient ends up at "yes" on a red-flag question, each with what they send, in order.
YES_BY_ANOTHER_NAME = [
    ("sms", "hedged", [Input(text="maybe a little")]),
    ("sms", "unclear twice", [Input(text="what?"), Input(text="purple")]),
    ("voice", "hedged speech", [Input(text="I think so.", confidence=0.9)]),
    ("voice", "unclear three times", [Input(text="What?", confidence=0.9)] * 3),
    ("voice", "silence three times", [Input(silent=True)] * 3),
    ("voice", "volunteered", [Input(text="No, but I can't pee.", confidence=0.9)]),
]


@pytest.mark.parametrize(("channel", "how", "inputs"), YES_BY_ANOTHER_NAME,
                         ids=[c[1] for c in YES_BY_ANOTHER_NAME])
def test_the_emergency_instruction_comes_first_with_no_greeting_or_hedge_before_it(
    protocol: Protocol, channel: str, how: str, inputs: list[Input]
) -> None:
    reply = at_question(protocol, channel, "bladder_problem")
    for given in inputs:
        reply = engine.resume(protocol, reply.state, given)
    assert reply.state.rule == "cauda_equina_bladder"
    assert reply.messages[0].startswith(GO_TO_ER)
    for lead in ("treat that as a yes", "did not get that", "did not hear", "Back pain line", "Welcome"):
        assert lead not in said(reply)


def test_a_red_flag_in_the_first_text_ends_the_conversation_before_any_greeting(
    protocol: Protocol,
) -> None:
    reply = engine.start(protocol, "sms", "Help, I can't pee and my back is agony")
    assert reply.state.disposition == "emergency" and reply.question is None
    assert reply.messages == protocol.outcome_messages("emergency_er", "sms")


COMBINATIONS = [
    ("fever_with_infection_risk", "fever", "iv_drug_use"),
    ("fever_with_infection_risk", "fever", "infection_risk"),
    ("neuro_with_fever", "leg_nerve_symptoms", "fever"),
    ("neuro_with_infection_risk", "leg_nerve_symptoms", "iv_drug_use"),
    ("neuro_with_infection_risk", "leg_nerve_symptoms", "infection_risk"),
    ("neuro_with_cancer", "leg_nerve_symptoms", "cancer_history"),
    ("neuro_after_fall", "leg_nerve_symptoms", "trauma"),
]


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("rule", "first", "second"), COMBINATIONS)
def test_a_combination_fires_on_the_answer_that_completes_it(
    protocol: Protocol, channel: str, rule: str, first: str, second: str
) -> None:
    talk = Conversation(protocol, channel, yes={first, second}).start().play()
    completing = talk.asked[-1]  # whichever of the two the protocol asks later
    assert {first, second} <= set(talk.asked) and completing in (first, second)
    assert (talk.last.state.disposition, talk.last.state.rule) == ("emergency", rule)
    assert is_emergency_instruction(talk.last.messages)
    assert not talk.replies[-2].state.is_done


@pytest.mark.parametrize(("rule", "first", "second"), COMBINATIONS)
@pytest.mark.parametrize("volunteered_item", [0, 1], ids=["first volunteered", "second volunteered"])
def test_a_combination_completes_in_either_order(
    protocol: Protocol, rule: str, first: str, second: str, volunteered_item: int
) -> None:
    told, asked = (first, second) if volunteered_item == 0 else (second, first)
    talk = Conversation(protocol, "sms", yes={asked}).start(VOLUNTEER[told])
    assert talk.last.state.facts.get(told) is True and not talk.last.state.is_done
    talk.play()
    assert talk.asked[-1] == asked and told not in talk.asked
    assert (talk.last.state.disposition, talk.last.state.rule) == ("emergency", rule)
    assert is_emergency_instruction(talk.last.messages)


# ---- volunteered facts -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "fact"), [
    ("I've had a fever since Sunday", "fever"),
    ("Three weeks of sciatica in my left leg", "leg_nerve_symptoms"),
    ("I used to inject heroin but I've been clean for 4 years", "iv_drug_use"),
    ("I had breast cancer ten years ago", "cancer_history"),
])
def test_a_volunteered_fact_is_not_asked_again(protocol: Protocol, text: str, fact: str) -> None:
    talk = Conversation(protocol, "sms").start(text).play()
    assert fact not in talk.asked
    assert talk.last.state.facts[fact] is True and fact in talk.last.state.volunteered


def test_a_later_no_never_overrides_a_volunteered_yes(protocol: Protocol) -> None:
    talk = Conversation(protocol, "sms").start("I've had a fever since Sunday")
    talk.answer(Input(text="45"))
    talk.answer(Input(text="no fever, no"))  # the answer to the chest-pain question
    talk.play()
    assert talk.last.state.facts["fever"] is True
    assert talk.last.state.rule == "fever_alone"


def test_a_no_that_describes_the_symptom_counts_as_yes(protocol: Protocol) -> None:
    reply = engine.resume(protocol, at_question(protocol, "sms", "fever").state,
                          Input(text="No. Chills all night though"))
    assert reply.state.facts["fever"] is True
    assert reply.question is not None and reply.question.id == "leg_nerve_symptoms"


# ---- outcomes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("yes", "age", "rule", "first_words"), [
    (set(), 45, "no_red_flags", "Your answers do not show signs of a serious problem."),
    ({"fever"}, 45, "fever_alone", "A clinician will call you back"),
    ({"history_risk"}, 70, "history_risk", "A clinician will call you back"),
    (set(), 16, "under_18", "This line is for adults"),
])
def test_every_non_emergency_outcome_ends_with_the_safety_net(
    protocol: Protocol, channel: str, yes: set[str], age: int, rule: str, first_words: str
) -> None:
    talk = Conversation(protocol, channel, yes=yes, age=age).start().play()
    assert talk.last.state.rule == rule
    assert talk.last.messages[0].startswith(first_words)
    assert talk.last.messages[-1] == protocol.safety_net[channel]
    assert "?" not in said(talk.last) and talk.last.prompt is None


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_finished_conversation_cannot_be_resumed(protocol: Protocol, channel: str) -> None:
    done = Conversation(protocol, channel).start().play().last.state
    with pytest.raises(EngineError):
        engine.resume(protocol, done, yes_or_no(channel, True))


def test_an_unknown_channel_is_refused(protocol: Protocol) -> None:
    with pytest.raises(EngineError):
        engine.start(protocol, "whatsapp")


# ---- state -------------------------------------------------------------------------------------

def test_a_conversation_restored_from_json_carries_on_exactly(protocol: Protocol) -> None:
    talk = Conversation(protocol, "voice").start("I used to inject heroin")
    for given in (Input(digits="52#"), Input(silent=True)):
        talk.answer(given)
    state = talk.last.state
    assert (state.current, state.attempts, state.volunteered) == ("chest_pain", 1, ("iv_drug_use",))
    restored = State.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    nxt = Input(digits="2")
    assert engine.resume(protocol, restored, nxt) == engine.resume(protocol, state, nxt)


def test_the_stored_state_of_a_whole_conversation_is_small(protocol: Protocol) -> None:
    talk = Conversation(protocol, "sms", yes={"leg_nerve_symptoms"}).start(
        "Three weeks of sciatica in my left leg and it keeps me up at night")
    talk.play()
    size = len(json.dumps(talk.last.state.to_dict()).encode())
    assert size < 1024, size


# ---- abandoned conversations and clinician summaries -------------------------------------------

@pytest.mark.parametrize(("first_text", "answers", "level"), [
    ("", [], None),
    ("", ["45", "no", "no"], None),
    ("", ["45", *["no"] * 9, "yes"], Level.URGENT),            # fever, then hung up
    ("", ["45", *["no"] * 9, "kind of"], Level.URGENT),        # hedged fever
    ("I had breast cancer", ["45"], Level.URGENT),             # volunteered, then silence
])
def test_an_abandoned_conversation_keeps_the_level_its_answers_reach(
    protocol: Protocol, first_text: str, answers: list[str], level: Level | None
) -> None:
    talk = Conversation(protocol, "sms").start(first_text)
    for text in answers:
        talk.answer(Input(text=text))
    assert not talk.last.state.is_done
    assert engine.provisional_level(protocol, talk.last.state) == level


def test_the_clinician_summary_names_flags_in_plain_words_without_the_patients_words(protocol: Protocol) -> None:
    narrative = "I used to inject heroin but I've been clean for 4 years"
    talk = Conversation(protocol, "sms", yes={"fever"}, age=62).start(narrative).play()
    summary = engine.summary(protocol, talk.last.state)
    assert summary == "62y: IV drug use + fever"
    for raw in ("heroin", "inject", "clean", "yes"):
        assert raw not in summary


@pytest.mark.parametrize(("age_answers", "expected"), [
    (["45"], "45y: no red flags"),
    (["old enough", "not saying"], "age unknown: no red flags"),
])
def test_the_summary_shows_the_age_or_that_it_is_unknown(
    protocol: Protocol, age_answers: list[str], expected: str
) -> None:
    talk = Conversation(protocol, "sms").start()
    for text in age_answers:
        talk.answer(Input(text=text))
    assert engine.summary(protocol, talk.play().last.state) == expected


# ---- channels ----------------------------------------------------------------------------------

def test_sms_and_voice_word_the_same_question_for_their_channel(protocol: Protocol) -> None:
    sms, voice = engine.start(protocol, "sms"), engine.start(protocol, "voice")
    assert "Reply with a number" in sms.prompt  # type: ignore[operator]
    assert "press the pound key" in voice.prompt and "Reply" not in voice.prompt  # type: ignore[operator]
    sms_q, voice_q = at_question(protocol, "sms", "chest_pain"), at_question(protocol, "voice", "chest_pain")
    assert sms_q.prompt is not None and sms_q.prompt.endswith("Reply YES or NO.")
    assert voice_q.prompt is not None and "Press 1 or say yes. Press 2 or say no. Press 9" in voice_q.prompt
    assert "Reply YES or NO" not in voice_q.prompt
    assert "call 911 now" in sms.messages[0] and "hang up and call 911" in voice.messages[0]


def test_every_sms_message_fits_one_segment(protocol: Protocol) -> None:
    talk = Conversation(protocol, "sms", yes={"leg_nerve_symptoms"}).start("my back hurts").play()
    assert all(fits_one_segment(m) for r in talk.replies for m in r.messages)


@pytest.mark.parametrize(("confidence", "understood"), [
    (0.1, False), (0.39, False), (0.4, True), (0.92, True), (None, True),
])
def test_speech_the_recogniser_doubts_is_asked_again(
    protocol: Protocol, confidence: float | None, understood: bool
) -> None:
    reply = engine.resume(protocol, at_question(protocol, "voice", "chest_pain").state,
                          Input(text="No.", confidence=confidence))
    assert (reply.question is not None and reply.question.id != "chest_pain") is understood
    assert ("Sorry, I did not get that." in said(reply)) is not understood


def test_a_doubted_spoken_age_is_asked_again(protocol: Protocol) -> None:
    reply = engine.resume(protocol, engine.start(protocol, "voice").state, Input(text="forty five", confidence=0.2))
    assert reply.question is not None and reply.question.id == "age"
    assert reply.messages[0] == "Sorry, I did not get that."


@pytest.mark.parametrize(("digits", "next_question", "sorry"), [
    ("1", None, False),                   # yes: chest pain is an emergency
    ("1#", None, False),
    ("2", "tearing_pain_or_abdominal", False),
    ("9", "chest_pain", False),           # repeat, without an apology
    ("5", "chest_pain", True),
    ("12", "chest_pain", True),
])
def test_keypad_one_is_yes_two_is_no_nine_repeats(
    protocol: Protocol, digits: str, next_question: str | None, sorry: bool
) -> None:
    asked = at_question(protocol, "voice", "chest_pain")
    reply = engine.resume(protocol, asked.state, Input(digits=digits))
    assert (reply.question.id if reply.question else None) == next_question
    assert ("Sorry, I did not get that." in said(reply)) is sorry
    if digits == "9":
        assert reply.messages == [asked.prompt] and reply.state == asked.state


def test_pressing_nine_again_and_again_never_counts_as_an_answer(protocol: Protocol) -> None:
    asked = at_question(protocol, "voice", "bladder_problem")
    reply = asked
    for _ in range(10):
        reply = engine.resume(protocol, reply.state, Input(digits="9"))
    assert reply.state == asked.state


def test_star_repeats_a_number_question(protocol: Protocol) -> None:
    opened = engine.start(protocol, "voice")
    reply = engine.resume(protocol, opened.state, Input(digits="*"))
    assert reply.messages == [opened.prompt] and reply.state == opened.state


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("age", ["0", "121", "150", "1234567"])
def test_an_age_out_of_range_is_asked_again(protocol: Protocol, channel: str, age: str) -> None:
    given = Input(digits=f"{age}#") if channel == "voice" else Input(text=age)
    reply = engine.resume(protocol, engine.start(protocol, channel).state, given)
    assert reply.question is not None and reply.question.id == "age"
    assert reply.messages[0] == "Sorry, I did not get that."
    assert "age" not in reply.state.facts


@pytest.mark.parametrize("digits", ["²", "4²", "½", "٤٥", "*#0", "#", "4" * 40, "12a"])
def test_odd_keys_on_the_age_question_are_asked_again(protocol: Protocol, digits: str) -> None:
    reply = engine.resume(protocol, engine.start(protocol, "voice").state, Input(digits=digits))
    assert reply.question is not None and reply.question.id == "age"
    assert reply.messages[0] == "Sorry, I did not get that."


@pytest.mark.parametrize(("channel", "given", "age"), [
    ("voice", Input(digits="45#"), 45), ("voice", Input(digits="045"), 45),
    ("voice", Input(text="I'm sixty two.", confidence=0.9), 62),
    ("sms", Input(text="I'm 62"), 62), ("sms", Input(text="seventy-four"), 74),
])
def test_an_age_is_read_from_keys_or_words(protocol: Protocol, channel: str, given: Input, age: int) -> None:
    reply = engine.resume(protocol, engine.start(protocol, channel).state, given)
    assert reply.state.facts["age"] == age
    assert reply.question is not None and reply.question.id == "chest_pain"


@pytest.mark.parametrize(("channel", "unclear", "reasks"), [
    ("sms", Input(text="old enough"), 1), ("voice", Input(digits="#"), 2), ("voice", Input(silent=True), 2),
])
def test_an_age_never_given_is_skipped_after_the_re_asks(
    protocol: Protocol, channel: str, unclear: Input, reasks: int
) -> None:
    reply = engine.start(protocol, channel)
    for _ in range(reasks):
        reply = engine.resume(protocol, reply.state, unclear)
        assert reply.question is not None and reply.question.id == "age"
    reply = engine.resume(protocol, reply.state, unclear)
    assert reply.messages[0] == protocol.text("skipped", channel)
    assert reply.question is not None and reply.question.id == "chest_pain"
    assert reply.state.facts["age"] is None


# ---- any input at all --------------------------------------------------------------------------

turns = st.one_of(
    st.builds(Input, text=st.text(max_size=40)),
    st.builds(Input, text=st.sampled_from(["yes", "no", "maybe", "45", "I can't pee", "fever", "??"])),
    st.builds(Input, digits=st.text(alphabet="0123456789*#", max_size=8)),
    # Any digit-like character at all: "²" and "٣" are digits to str.isdigit().
    st.builds(Input, digits=st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=4)),
    st.builds(Input, text=st.text(max_size=20), confidence=st.floats(0, 1)),
    st.just(Input(silent=True)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channel=st.sampled_from(CHANNELS), first=st.text(max_size=60), script=st.lists(turns, max_size=40))
def test_any_input_gets_one_question_or_an_ending_within_a_bounded_number_of_turns(
    protocol: Protocol, channel: str, first: str, script: list[Input]
) -> None:
    limit = len(protocol.questions) * (max(engine.REASKS.values()) + 1)
    reply, answered = engine.start(protocol, channel, first), 0
    script = [*script, *[Input(text="??")] * limit]
    for given in script:
        if reply.state.is_done:
            break
        before = reply.state
        reply = engine.resume(protocol, before, given)
        answered += reply.state != before  # a repeat (9 or *) leaves the state as it was
        assert answered <= limit
        if reply.state.is_done:
            assert reply.prompt is None and reply.question is None and reply.rule is not None
            assert reply.state.disposition in ("emergency", "urgent", "routine")
        else:
            assert reply.question is not None and reply.messages[-1] == reply.prompt
            assert not any("?" in m for m in reply.said), reply.said
    assert reply.state.is_done
