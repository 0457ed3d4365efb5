"""Read a patient's free-text answer (an SMS or a speech transcript) generously.

Pure standard library. Safety rule: an uncertain answer to a red-flag question counts as yes,
so a hedge is reported as HEDGED (the caller treats it as yes), and a "no" is only believed
when it is unmistakable. Anything we cannot read is UNCLEAR, so the caller asks again.
"""
from __future__ import annotations

import math
import re
import unicodedata
from enum import Enum


class YesNo(str, Enum):
    YES = "yes"
    NO = "no"
    HEDGED = "hedged"
    UNCLEAR = "unclear"


# Phones and speech engines send several apostrophes; "don\u2019t" must read as "don't".
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u02bc": "'", "`": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"'})
# Numbers (with thousands commas and a decimal part) or words (letters, inner apostrophes).
# Digits are ASCII only so float() can never be handed something it rejects.
_TOKEN = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|[^\W\d_]+(?:'[^\W\d_]+)*")


def normalise(text: str) -> str:
    """Lowercase, straight quotes, no control characters, single spaces, no edge punctuation.

    Inner punctuation is kept: free_text.py splits clauses on it.
    """
    # Controls go before NFKC, so a mark they separated from its letter is composed with it;
    # whitespace controls (\n, \t) become spaces so the words either side stay apart.
    text = "".join(" " if ch.isspace() else ch for ch in ("" if text is None else str(text))
                   if ch.isspace() or unicodedata.category(ch)[0] != "C")
    # NFKC folds full-width and compatibility forms ("ＹＥＳ", "²") into plain ones.
    text = unicodedata.normalize("NFKC", text).lower().translate(_QUOTES)
    text = " ".join(text.split())
    start, end = 0, len(text)
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge_junk(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _words(text: str) -> list[str]:
    """Word tokens: matching whole tokens is what keeps "know", "none", "nobody" apart from "no"."""
    return _TOKEN.findall(normalise(text))


# ---- yes / no --------------------------------------------------------------------------------
# Token kinds: Y strong yes, y weak yes (only counts when it leads), N strong no, n weak no,
# V "I don't"-style no, H hedge, Q confused, F filler, O anything else.
_NOT = {v: rf"(?:{v}n't|{v}nt|{v} not)" for v in ("do", "does", "did", "have", "is")}
# Phrases are replaced by a marker token, in this order, so that the more specific reading wins:
# "I don't understand" is not "I don't"; "not really sure" is not "not really";
# "I don't think so" is not "think so"; "I don't know" is not "I don't"; "I do not" is not "I do".
_PHRASES = [
    ("_Y", ["uh huh", "mm hmm"]),  # before "huh" can be read as confusion
    ("_Q", [rf"(?:i )?(?:{_NOT['do']}|{_NOT['did']}) (?:understand|get it|follow)",
            "what do you mean", "what does that mean", "yes or no", "say (?:that )?again"]),
    ("_H", [r"not (?:\S+ )?(?:sure|certain)", "no idea", "no clue", "not a clue"]),
    ("_N", [rf"(?:i )?{_NOT['do']} (?:think|believe) so", "not really", "not at all", "no way",
            "(?:definitely|absolutely|certainly|of course|really) not", "nuh uh",
            "not that i (?:know of|can think of|have noticed|'ve noticed|noticed)",
            "not even a (?:little|bit)"]),
    ("_H", [rf"(?:i )?{_NOT['do']} know", "(?:i )?think so", "i think", "i guess", "guess so",
            "i suppose", "suppose so", "i believe so", "i reckon", "kind of", "sort of",
            # "a little while ago" is a time, not a hedge.
            r"a (?:little|bit|tad)(?: bit)?(?! while| ago| later| earlier| longer)",
            "yes and no", "on and off", "off and on", "now and (?:then|again)", "comes and goes",
            "at times", "hard to say", "not always", "not much", "could be", "can't (?:say|tell)"]),
    ("_V", [rf"i {_NOT['do']}", rf"it {_NOT['does']}", rf"i {_NOT['did']}", rf"it {_NOT['did']}",
            rf"i {_NOT['have']}", "i've not", "(?:i have|i've) no", "(?:i'm|im|i am) not",
            rf"(?:it's|its|it is) not|it {_NOT['is']}"]),
    ("_Y", ["i do", "i have", "i've", "i did", "it does", "it did", "it is", "it has",
            "of course", "you bet"]),
    ("_y", ["(?:that's|that is) (?:right|correct|true)"]),
]
_PHRASE_RES = [(m, re.compile(rf"(?<!\S)(?:{'|'.join(p)})(?!\S)")) for m, p in _PHRASES]
_STRONG_YES = re.compile(r"y+e+s+h?|y+e+a+h*|y+e+h|y+a+h*|y+[eu]+p+|ye|a+y+e+|m+h+m+|affirmative")
_STRONG_NO = re.compile(r"n+o+|no+pe+|na+h+|nay|negative")
_WEAK_YES = {"y", "sure", "right", "correct", "true", "definitely", "absolutely", "certainly",
             "indeed", "totally"}
_WEAK_NO = {"n", "none", "never", "nothing", "not", "nada", "nil", "neither"}
_HEDGE = {"maybe", "perhaps", "possibly", "probably", "kinda", "sorta", "dunno", "idk", "unsure",
          "sometimes", "occasionally", "slightly", "somewhat", "might", "partly", "ish"}
_FILLER = {"i", "i'm", "im", "well", "oh", "um", "umm", "uh", "er", "erm", "hmm", "hm", "ah",
           "ok", "okay", "so", "hi", "hello", "hey", "actually", "honestly", "and", "but",
           "thanks", "thank", "you", "please", "sorry", "doctor", "nurse"}
# After a weak no ("nothing", "I don't") only these may follow: "I don't feel my legs" must not
# read as a no to "do you have numbness?", so anything with more content is UNCLEAR.
_BENIGN = _FILLER | {"that", "it", "this", "those", "them", "any", "anything", "like", "of",
                     "the", "at", "all", "really", "think", "believe", "had", "have", "got",
                     "ever", "before", "there", "noticed", "problems", "problem", "issues",
                     "me", "here", "else", "that's", "it's", "fine", "thankfully", "luckily"}


def _kind(token: str) -> str:
    if token.startswith("_"):
        return token[1]
    if token in _FILLER:
        return "F"
    if token in _HEDGE:
        return "H"
    if _STRONG_YES.fullmatch(token):
        return "Y"
    if _STRONG_NO.fullmatch(token):
        return "N"
    return "y" if token in _WEAK_YES else "n" if token in _WEAK_NO else "O"


def _marked(words: list[str]) -> list[str]:
    text = " ".join(words)
    for marker, pattern in _PHRASE_RES:
        text = pattern.sub(marker, text)
    return text.split()


def read_yes_no(text: str) -> YesNo:
    """Yes, no, hedged (caller treats as yes) or unclear (caller asks again)."""
    words = _words(text)
    content = [w for w in words if w not in _FILLER]
    if content in (["1"], ["2"]):  # "reply 1 for yes, 2 for no"
        return YesNo.YES if content == ["1"] else YesNo.NO
    tokens = _marked(words)
    kinds = [_kind(t) for t in tokens]
    # Any doubt, or a clear yes and a clear no together ("no... actually yes"), is a hedge.
    if "H" in kinds or ("Y" in kinds and ("N" in kinds or "V" in kinds)):
        return YesNo.HEDGED
    lead = next((i for i, k in enumerate(kinds) if k != "F"), None)
    if lead is None:
        return YesNo.UNCLEAR
    first, rest = kinds[lead], list(zip(tokens[lead + 1:], kinds[lead + 1:]))
    # The leading word decides; what follows can only turn it into a hedge.
    if first in "Yy":
        return YesNo.HEDGED if any(k in "NV" for _, k in rest) else YesNo.YES
    if first in "NnV":
        if first == "N" or all(k in "NnVF" or t in _BENIGN for t, k in rest):
            return YesNo.NO
    return YesNo.UNCLEAR


# ---- numbers ---------------------------------------------------------------------------------
_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
# Words that multiply what came before (or 1 after "a"): "a hundred", "two dozen", "a few".
_TIMES = {"hundred": 100, "thousand": 1000, "dozen": 12, "couple": 2, "few": 3}


def _spelled(tokens: list[str], i: int) -> tuple[float, int]:
    """A spelled-out number from tokens[i]: (value, index after). Index i means none.

    `last` is what the previous word was, so "two three" stops at two and "sixty two" does not.
    """
    total, current, j, last = 0.0, 0.0, i, ""
    if tokens[i] in ("a", "an") and i + 1 < len(tokens) and tokens[i + 1] in _TIMES:
        current, j, last = 1.0, i + 1, "unit"
    while j < len(tokens) and last != "end":
        w, fresh = tokens[j], last in ("", "hundred", "thousand")
        if w in _SMALL and (fresh or last == "tens" and _SMALL[w] < 10):
            current, last = current + _SMALL[w], "unit"
        elif w in _TENS and fresh:
            current, last = current + _TENS[w], "tens"
        elif w == "hundred" and last in ("", "unit", "tens"):
            current, last = (current or 1) * 100, "hundred"
        elif w == "thousand" and last != "thousand":
            total, current, last = total + (current or 1) * 1000, 0.0, "thousand"
        elif w in _TIMES and last in ("", "unit", "tens"):  # "a dozen", "two dozen", "a few"
            current, last = (current or 1) * _TIMES[w], "end"
        elif (w == "and" and last in ("hundred", "thousand") and j + 1 < len(tokens)
              and (tokens[j + 1] in _SMALL or tokens[j + 1] in _TENS)):
            pass  # "a hundred and one"
        else:
            break
        j += 1
    return total + current, j


def _number_at(tokens: list[str], i: int) -> tuple[float, int] | None:
    """A number in digits or words starting at tokens[i], plus any "and a half"."""
    if tokens[i][0] in "0123456789":
        value, j = float(tokens[i].replace(",", "")), i + 1
    else:
        value, j = _spelled(tokens, i)
        if j == i:
            return None
    if tokens[j:j + 3] == ["and", "a", "half"]:
        value, j = value + 0.5, j + 3
    # A 400-digit number is inf: not a reading of anything, so skip it rather than return it.
    return (value, j) if math.isfinite(value) else None


def read_number(text: str) -> float | None:
    """The first number mentioned: "I'm 62", "sixty-two", "about a 7", "7/10". None if none."""
    tokens = _words(text)
    for i in range(len(tokens)):
        found = _number_at(tokens, i)
        if found is not None:
            return found[0]
    return None


# ---- durations -------------------------------------------------------------------------------
_WEEKS_PER = {**dict.fromkeys(("minute", "minutes", "min", "mins"), 1 / 10080),
              **dict.fromkeys(("hour", "hours", "hr", "hrs"), 1 / 168),
              **dict.fromkeys(("day", "days", "d"), 1 / 7),
              **dict.fromkeys(("week", "weeks", "wk", "wks", "w"), 1.0),
              **dict.fromkeys(("fortnight", "fortnights"), 2.0),
              **dict.fromkeys(("month", "months", "mo", "mos", "mth", "mths"), 4.345),
              **dict.fromkeys(("year", "years", "yr", "yrs", "y"), 52.0)}
_BETWEEN = {"of", "more", "whole", "full", "long", "odd"}  # "a couple of weeks", "two full days"
_RELATIVE = {"two_days": 2 / 7, "one_day": 1 / 7, "none": 0.0, "week": 1.0, "month": 4.345,
             "year": 52.0}
_RELATIVE_RE = re.compile(
    r"(?<!\S)(?:(?P<two_days>day before yesterday)|(?P<one_day>yesterday|last night)"
    r"|(?P<none>today|tonight|this (?:morning|afternoon|evening)|just now)"
    r"|(?P<week>last week)|(?P<month>last month)|(?P<year>last year))(?!\S)")


def _unit_after(tokens: list[str], j: int) -> float | None:
    while j < len(tokens) and tokens[j] in _BETWEEN:
        j += 1
    return _WEEKS_PER.get(tokens[j]) if j < len(tokens) else None


def read_duration_weeks(text: str) -> float | None:
    """How long the pain has lasted, in weeks. A bare number means weeks. None if unreadable."""
    tokens = _words(text)
    bare: float | None = None
    i = 0
    while i < len(tokens):
        found = _number_at(tokens, i)
        if found is None and tokens[i] in ("a", "an") and _unit_after(tokens, i + 1) is not None:
            found = (1.0, i + 1)  # "a week ago", "an hour"
        if found is None:
            i += 1
            continue
        value, i = found
        if (per := _unit_after(tokens, i)) is not None:
            return value * per
        bare = value if bare is None else bare
    # No number with a unit: fall back to "yesterday"-style words, then a bare number.
    relative = _RELATIVE_RE.search(" ".join(tokens))
    if relative and relative.lastgroup:
        return _RELATIVE[relative.lastgroup]
    return bare
