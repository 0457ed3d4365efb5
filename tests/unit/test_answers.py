"""How generously, and how safely, free-text answers are read."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from telehealth.triage.answers import (
    YesNo,
    normalise,
    read_duration_weeks,
    read_number,
    read_yes_no,
)

YES = [
    "yes", "y", "Y", "ye", "ya", "yea", "yeah", "yep", "yup", "yes!", "YES!!", "yesss", "Yeah.",
    "uh huh", "uh-huh", "mm hmm", "sure", "correct", "right", "1", " 1 ", "1.", "affirmative",
    "yes I do", "yes, since yesterday", "Yeah that's happening", "yes unfortunately",
    "yes, that's right", "Yes.", "I do", "I have", "it does", "definitely", "absolutely",
    "\u201cYes\u201d", "oh yes", "Well, yes", "um yeah", "that's correct", "Yes, nothing else",
    "of course", "you bet", "yes, a little while ago", "yes I\u2019ve had that", "aye", "mhm",
    "Hi, yes",
]
NO = [
    "no", "n", "N", "nope", "nah", "no.", "NO!", "Nope.", "nooo", "No I don't", "No I don\u2019t",
    "I don\u02bct", "I don`t", "not really", "not at all", "no, nothing like that",
    "nope, none of that", "No not at all", "no, that's fine", "none", "never", "nothing",
    "I don't", "I dont", "I do not", "it doesn't", "it does not", "2", "negative",
    "I don't think so", "definitely not", "absolutely not", "no, that's right", "of course not",
    "certainly not", "never had that", "I don't have that", "nothing like that",
    "not that I know of", "no I know", "I haven't", "well no", "No.\n",
]
HEDGED = [
    "I think so", "think so", "kind of", "kinda", "sort of", "sort of yes", "maybe",
    "maybe a little", "a little", "a bit", "possibly", "probably", "not sure",
    "not sure, maybe", "I'm not sure", "not really sure", "I don't know", "I dont know", "dunno",
    "idk", "sometimes", "on and off", "yes and no", "hard to say", "I guess", "might be",
    "could be", "no... actually yes", "No, actually yes", "yes no", "nope, yes", "yes, maybe",
    "no, maybe a little", "probably not", "I have no idea", "no idea", "not much",
    "yes but not always", "yeah a bit", "sure, no", "no, I do", "yes I don't", "Perhaps.",
]
UNCLEAR = [
    "", " ", "   \n\t", "\U0001F44D", "\U0001F600\U0001F600", "...", "?", "I don't understand",
    "I dont understand", "what?", "What do you mean", "huh", "asdfghjkl", "qwerty uiop",
    "1234567890123456789012345678901234567890", "3", "10", "0", "1.5", "nobody", "yesterday",
    "know", "ok", "okay", "hello", "sorry?", "my legs", "yes or no?", "\x00\x07",
    # A soft no followed by content may be describing the symptom itself: ask again.
    "I don't feel my legs", "nothing in my legs", "I have no feeling down there",
]


@pytest.mark.parametrize("text", YES)
def test_yes(text: str) -> None:
    assert read_yes_no(text) is YesNo.YES


@pytest.mark.parametrize("text", NO)
def test_no(text: str) -> None:
    assert read_yes_no(text) is YesNo.NO


@pytest.mark.parametrize("text", HEDGED)
def test_hedged(text: str) -> None:
    assert read_yes_no(text) is YesNo.HEDGED


@pytest.mark.parametrize("text", UNCLEAR)
def test_unclear(text: str) -> None:
    assert read_yes_no(text) is YesNo.UNCLEAR


@pytest.mark.parametrize("text, expected", [
    ("I don't know", YesNo.HEDGED),   # not a no, although it contains "don't"
    ("not really", YesNo.NO),         # not a hedge, although it is soft
    ("nobody", YesNo.UNCLEAR),        # a word starting "no" is not "no"
    ("none", YesNo.NO),
    ("yesterday", YesNo.UNCLEAR),     # a word starting "yes" is not "yes"
    ("I know", YesNo.UNCLEAR),
])
def test_words_not_substrings(text: str, expected: YesNo) -> None:
    assert read_yes_no(text) is expected


def test_yes_no_values_are_strings() -> None:
    assert YesNo.HEDGED == "hedged" and YesNo("unclear") is YesNo.UNCLEAR


@pytest.mark.parametrize("text, expected", [
    ("  Yes!!  ", "yes"),
    ("\u2018Hello\u2019 \u201cthere\u201d", "hello' \"there"),  # edge quotes are punctuation
    ("a\x00b\x07c", "abc"),
    ("no,\n\tthat's   fine.", "no, that's fine"),
    ("...no...", "no"),
    ("  45. ", "45"),
    ("", ""),
    ("I\u2019M FINE", "i'm fine"),
])
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("62", 62), ("I'm 62", 62), ("I\u2019m 62", 62), ("62 years old", 62), ("sixty two", 62),
    ("sixty-two", 62), ("Sixty Two", 62), ("about a 7", 7), ("7/10", 7), ("seven", 7),
    ("a hundred and one", 101), ("one hundred", 100), ("  45. ", 45), ("zero", 0), ("0", 0),
    ("ten out of ten", 10), ("nineteen", 19), ("ninety-nine", 99), ("twenty", 20),
    ("a dozen", 12), ("a couple", 2), ("a few", 3), ("two dozen", 24), ("3.5", 3.5),
    ("1,700", 1700), ("about 8 I think", 8), ("two three", 2), ("twenty eleven", 20),
    ("it's about a 6 or 7", 6), ("two and a half", 2.5),
    ("1234567890123456789012345678901234567890", 1234567890123456789012345678901234567890.0),
])
def test_read_number(text: str, expected: float) -> None:
    assert read_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "", "no", "none", "a lot", "an hour", "\U0001F622", "\x00\x1f", "lots", "about a", "someone",
    "9" * 400,  # overflows to inf: not a reading
])
def test_read_number_none(text: str) -> None:
    assert read_number(text) is None


def test_read_number_long_input() -> None:
    text = "my back hurts \U0001F62D\x00 " * 100 + " it's a 7"
    assert len(text) > 1700
    assert read_number(text) == 7


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("3 weeks", 3), ("about 10 days", 10 / 7), ("around 5 months", 5 * 4.345),
    ("a year", 52), ("1 year", 52), ("2 yrs", 104), ("it started today", 0), ("today", 0),
    ("this morning", 0), ("since yesterday", 1 / 7), ("yesterday", 1 / 7),
    ("a couple of weeks", 2), ("a few days", 3 / 7), ("a month", 4.345), ("six weeks", 6),
    ("1.5 weeks", 1.5), ("last week", 1), ("a week ago", 1), ("Six Weeks.", 6),
    ("3wks", 3), ("10 days", 10 / 7), ("a fortnight", 2), ("two and a half weeks", 2.5),
    ("about 48 hours", 48 / 168), ("last night", 1 / 7), ("a day or two", 1 / 7),
    ("since last week, it's a 7", 1), ("it's a 7 and started 3 weeks ago", 3),
    ("day before yesterday", 2 / 7), ("last month", 4.345), ("last year", 52),
    ("twelve months", 12 * 4.345), ("about 2 weeks, worse since yesterday", 2),
    ("2-3 weeks", 3), ("six to eight weeks", 8),  # a range reads as its upper end
])
def test_read_duration_weeks(text: str, expected: float) -> None:
    assert read_duration_weeks(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "", "since Thursday", "weeks", "a while", "ages", "since the weekend", "\U0001F622", "9" * 400,
])
def test_read_duration_weeks_none(text: str) -> None:
    assert read_duration_weeks(text) is None


ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),  # includes control characters
    st.text(alphabet=st.sampled_from(list("yesnot 0123456789,.'-\u2019\n\x00")), max_size=60),
    st.lists(st.sampled_from(["yes", "no", "not", "a", "and", "hundred", "half", "few", "i",
                              "don't", "know", "week", "days", "1", "2", "7", "sure", "maybe",
                              "\x00", "\U0001F600", "9" * 400]), max_size=12).map(" ".join),
)


@settings(database=None, max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_readers_never_raise(text: str) -> None:
    assert isinstance(read_yes_no(text), YesNo)
    number = read_number(text)
    assert number is None or isinstance(number, float)
    weeks = read_duration_weeks(text)
    assert weeks is None or isinstance(weeks, float)
    assert normalise(normalise(text)) == normalise(text)
