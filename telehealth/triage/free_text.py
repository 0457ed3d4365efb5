"""Find red flags a patient volunteers in their own words (CLINICAL.md s1 principle 5)."""
from __future__ import annotations

import re

from telehealth.triage.answers import normalise
from telehealth.triage.protocol import Phrase, Protocol

# A negation only reaches back this far, and never across a clause boundary.
_NEGATION_REACH = 30
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]|\bbut\b|\bthough\b|\balthough\b")


def volunteered(protocol: Protocol, text: str) -> list[str]:
    """Facts the text states as present, in protocol order."""
    clean = normalise(text)
    if not clean:
        return []
    return [ph.fact for ph in protocol.phrases if mentions(protocol, ph, clean)]


def mentions(protocol: Protocol, phrase: Phrase, clean_text: str) -> bool:
    for pattern in phrase.patterns:
        for match in pattern.finditer(clean_text):
            clause_start = _clause_start(clean_text, match.start())
            clause = clean_text[clause_start:_clause_end(clean_text, match.end())]
            if phrase.unless is not None and phrase.unless.search(clause):
                continue
            before = clean_text[max(clause_start, match.start() - _NEGATION_REACH):match.start()]
            if not protocol.negation.search(before):
                return True
    return False


def _clause_start(text: str, position: int) -> int:
    starts = [m.end() for m in _CLAUSE_BREAK.finditer(text, 0, position)]
    return starts[-1] if starts else 0


def _clause_end(text: str, position: int) -> int:
    found = _CLAUSE_BREAK.search(text, position)
    return found.start() if found else len(text)
