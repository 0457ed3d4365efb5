"""Red flags patients volunteer in their own words (flows/free_text.yaml), and the words that must not alarm."""
from __future__ import annotations

import pytest

from telehealth.triage import engine
from telehealth.triage.engine import Input
from telehealth.triage.free_text import volunteered
from telehealth.triage.protocol import Protocol

# The public patient vignettes' first texts (shared/patients/vignettes.yaml), and what they tell us.
NARRATIVES = [
    ("I got hit by a van on my bike on the way to work this morning and was thrown onto the road. "
     "My lower back hurts a lot.", {"major_trauma", "trauma"}),
    ("Pretty sure I've got another kidney stone. Sudden pain low in my back on the left about an hour ago "
     "and nothing I do makes it let up.", set()),
    ("Three weeks of sciatica in my left leg and it keeps me up at night. The physio stretches aren't doing "
     "much. Would a massage help?", {"leg_nerve_symptoms", "weight_night_or_bones"}),
    ("My pain clinic gave me an epidural about 5 weeks back. It was great for a couple of weeks, but the ache "
     "has crept back and it's worse than it was. Can I book another one?", {"infection_risk"}),
    ("HIV positive, on meds. Mid back aching 9 days, getting harder to ignore.", {"infection_risk"}),
    ("NEED A NOTE FOR WORK. MY BACK HAS BEEN BAD SINCE THURSDAY AND I CAN'T DO MY SHIFTS LIKE THIS.", set()),
    ("My back's been sore for three weeks, and twice this week my left knee buckled as I stepped down off the "
     "bus. I caught myself both times.", {"leg_weakness_one"}),
    ("I used to inject heroin but I've been clean for 4 years. My back has been aching for a couple of weeks, "
     "could that be related?", {"iv_drug_use"}),
    ("A friend's big dog barrelled into me at the park yesterday and knocked me flat. My lower back has been "
     "sore since.", {"trauma"}),
    ("Nagging ache in my upper back for 7 weeks or so. Ibuprofen barely takes the edge off.", set()),
    ("Dull ache in the middle of my back for about a month. Not sure it's worth bothering anyone about.", set()),
    ("I carry my 2 year old on my left hip most of the day and now the right side of my lower back aches. "
     "It's been about 10 days.", set()),
    ("74. Spent the weekend on my knees regrouting the shower. Low back stiff since.", set()),
    ("STAYED AT A FRIEND'S PLACE AND SLEPT ON A LUMPY SOFA BED. NOW MY LOWER BACK IS IN SPASM AND I CAN "
     "BARELY BEND TO PUT MY SOCKS ON.", set()),
    ("I drive a truck for a living. My low back ache comes and goes, it's been about 5 months now, worse "
     "after long shifts behind the wheel.", set()),
    ("Took up pickleball last month and my lower back is achy the day after games. No big deal, just "
     "wondering if I should take a break from playing.", set()),
]

# How patients say it -> the fact the line must hear.
SAID = [
    # 911-level
    ("my chest feels tight", "chest_pain"),
    ("I'm struggling to breathe", "chest_pain"),
    ("it feels like something ripped inside", "tearing_pain_or_abdominal"),
    ("the pain goes into my belly", "tearing_pain_or_abdominal"),
    ("pain in my tummy too", "tearing_pain_or_abdominal"),
    ("I blacked out this morning", "fainted_or_lightheaded"),
    ("I nearly passed out in the shower", "fainted_or_lightheaded"),
    ("I feel cold and clammy", "fainted_or_lightheaded"),
    # Cauda equina and severe deficit
    ("I can't pee", "bladder_problem"),
    ("I can\u2019t pee", "bladder_problem"),
    ("I haven't peed since yesterday", "bladder_problem"),
    ("I peed myself on the way to the car", "bladder_problem"),
    ("I can't hold my pee any more", "bladder_problem"),
    ("I had an accident in my pants", "bladder_problem"),
    ("I pooped myself", "bowel_problem"),
    ("I can't control my bowels", "bowel_problem"),
    ("it's numb down there", "saddle_numbness"),
    ("I can't feel the toilet paper when I wipe", "saddle_numbness"),
    ("I can't feel my privates", "saddle_numbness"),
    ("my legs keep giving way", "leg_weakness_both"),
    ("both legs feel like jelly", "leg_weakness_both"),
    ("my legs feel wobbly", "leg_weakness_both"),
    ("my foot is dragging", "foot_drop"),
    ("I keep tripping over my toes", "foot_drop"),
    # Trauma
    ("I got hit by a van on my bike", "major_trauma"),
    ("I was knocked off my bike by a car", "major_trauma"),
    ("I was rear-ended at a red light", "major_trauma"),
    ("I fell off a ladder clearing the gutters", "major_trauma"),
    ("I fell from a 10 foot ladder", "major_trauma"),
    ("I slipped on ice", "trauma"),
    ("I came off my bike", "trauma"),
    ("a big dog knocked me flat", "trauma"),
    # Infection, cancer, nerve symptoms, urgent-only flags
    ("I've been running a fever", "fever"),
    ("shaking chills last night", "fever"),
    ("I'm burning up", "fever"),
    ("HIV positive, on meds", "infection_risk"),
    ("epidural 5 weeks back", "infection_risk"),
    ("I had spinal surgery in June", "infection_risk"),
    ("I had a kidney infection last month", "infection_risk"),
    ("I used to inject heroin", "iv_drug_use"),
    ("I shoot up sometimes", "iv_drug_use"),
    ("I'm in remission from breast cancer", "cancer_history"),
    ("I had breast cancer like my mum", "cancer_history"),
    ("three weeks of sciatica", "leg_nerve_symptoms"),
    ("pins and needles down my right leg", "leg_nerve_symptoms"),
    ("electric shocks down my leg", "leg_nerve_symptoms"),
    ("my left knee buckled", "leg_weakness_one"),
    ("my right leg keeps giving way", "leg_weakness_one"),
    ("the pain is worse at night", "weight_night_or_bones"),
    ("I've lost 10 pounds without trying", "weight_night_or_bones"),
    ("I'm on prednisone for my asthma", "weight_night_or_bones"),
    # A negation does not reach across a clause.
    ("no fever, but I can't pee", "bladder_problem"),
    ("I didn't fall but my legs gave out", "leg_weakness_both"),
]

# Words that look like a red flag and are not one.
NOT_SAID = [
    ("no fever", "fever"),
    ("no fevers or chills", "fever"),
    ("I haven't had a temperature", "fever"),
    ("my temperature is normal", "fever"),
    ("temp of 37", "fever"),
    ("I didn't fall", "trauma"),
    ("I did not fall or hit anything", "trauma"),
    ("fell asleep on the sofa in a weird position", "trauma"),
    ("I fell behind at work", "trauma"),
    ("my pain fell from 8 to 5", "trauma"),
    ("I injured my back lifting a box", "trauma"),
    ("wear and tear", "tearing_pain_or_abdominal"),
    ("I tore a muscle", "tearing_pain_or_abdominal"),
    ("I sleep on my stomach and it hurts", "tearing_pain_or_abdominal"),
    ("I feel sick to my stomach with the pain", "tearing_pain_or_abdominal"),
    ("steroid injection", "iv_drug_use"),
    ("I had a steroid injection in my back", "iv_drug_use"),
    ("I inject insulin for diabetes", "iv_drug_use"),
    ("I have never injected drugs", "iv_drug_use"),
    ("I had a steroid injection", "weight_night_or_bones"),
    ("I lost weight on purpose", "weight_night_or_bones"),
    ("my mum had cancer", "cancer_history"),
    ("my dad died of cancer", "cancer_history"),
    ("no history of cancer", "cancer_history"),
    ("I use an electric heat pad", "leg_nerve_symptoms"),
    ("no tingling or numbness", "leg_nerve_symptoms"),
    ("I don't have any numbness in my legs", "leg_nerve_symptoms"),
    ("I'm not dizzy", "fainted_or_lightheaded"),
    ("I did not faint", "fainted_or_lightheaded"),
    ("my chest is fine", "chest_pain"),
    ("peeing is fine", "bladder_problem"),
    ("I had a bladder infection", "bladder_problem"),
    ("I am constipated", "bowel_problem"),
    ("I can walk fine", "leg_weakness_both"),
    ("my legs are fine", "leg_weakness_both"),
    ("I was driving a car", "major_trauma"),
]

# Everyday back-pain stories: nothing at all to hear.
ROUTINE = [
    "I carry my 2 year old on my left hip",
    "slept on a lumpy sofa bed",
    "took up pickleball",
    "I pulled a muscle at the gym",
    "I hurt my back lifting",
    "I moved house and lifted lots of boxes",
    "I sit at a desk all day",
    "I shovelled snow yesterday",
    "I work night shifts",
    "my doctor said it's just a muscle strain",
    "I've had back pain on and off for years",
    "it hurts when I bend over",
    "I take ibuprofen",
    "",
    "\U0001F62B",
]


def test_narratives_tell_exactly_their_red_flags(protocol: Protocol) -> None:
    wrong = [(text[:40], found, facts) for text, facts in NARRATIVES
             if (found := set(volunteered(protocol, text))) != facts]
    assert wrong == []


@pytest.mark.parametrize(("text", "fact"), SAID)
def test_a_red_flag_in_the_patients_words_is_heard(protocol: Protocol, text: str, fact: str) -> None:
    assert fact in volunteered(protocol, text)


@pytest.mark.parametrize(("text", "fact"), NOT_SAID)
def test_words_that_only_look_like_a_red_flag_are_not(protocol: Protocol, text: str, fact: str) -> None:
    assert fact not in volunteered(protocol, text)


@pytest.mark.parametrize("text", ROUTINE)
def test_everyday_back_pain_stories_raise_nothing(protocol: Protocol, text: str) -> None:
    assert volunteered(protocol, text) == []


@pytest.mark.parametrize("channel", ["sms", "voice"])
@pytest.mark.parametrize("text", ["I can't pee", "it's numb down there", "I blacked out", "my foot is dragging"])
def test_a_volunteered_emergency_answers_any_question_with_the_instruction(
    protocol: Protocol, channel: str, text: str
) -> None:
    opened = engine.start(protocol, channel)
    reply = engine.resume(protocol, opened.state, Input(text=f"45. {text}", confidence=0.9))
    assert reply.state.disposition == "emergency"
    assert reply.messages[0].startswith(("Call 911 now.", "This may be an emergency. Call 911"))


def test_a_routine_story_still_gets_the_greeting_and_the_first_question(protocol: Protocol) -> None:
    reply = engine.start(protocol, "sms", ROUTINE[0])
    assert reply.state.facts == {} and reply.question is not None and reply.question.id == "age"
