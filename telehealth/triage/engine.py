"""The triage engine: (state, input) -> (next state, reply). Pure: no Flask, Redis, Twilio or SQL.

SMS and voice share it; only the wording and the number of re-asks differ by channel.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Union

from telehealth.triage.answers import YesNo, read_duration_weeks, read_number, read_yes_no
from telehealth.triage.free_text import volunteered
from telehealth.triage.protocol import Level, Protocol, Question, Rule, holds

CHANNELS = ("sms", "voice")
# How many times a question is asked again after an unclear answer or silence before the
# question's own policy applies (issue: voice asks again at most twice; CLINICAL s1.4: one re-ask).
REASKS = {"sms": 1, "voice": 2}
# Speech transcripts below this confidence are read as unclear rather than guessed at.
MIN_SPEECH_CONFIDENCE = 0.4
REPEAT_KEYS = {"yes_no": "9", "number": "*"}

FactValue = Union[bool, float, None]


@dataclass(frozen=True)
class Input:
    """One patient turn: an SMS body, a speech transcript, keypad digits, or silence (voice)."""

    text: str = ""
    digits: str = ""
    confidence: float | None = None
    silent: bool = False


@dataclass(frozen=True)
class State:
    channel: str
    protocol_version: str
    facts: dict[str, FactValue] = field(default_factory=dict)
    current: str | None = None
    attempts: int = 0
    hedged: tuple[str, ...] = ()
    volunteered: tuple[str, ...] = ()
    disposition: str | None = None
    rule: str | None = None
    outcome: str | None = None

    @property
    def is_done(self) -> bool:
        return self.disposition is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hedged"], data["volunteered"] = list(self.hedged), list(self.volunteered)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "State":
        return cls(**{**data, "hedged": tuple(data["hedged"]), "volunteered": tuple(data["volunteered"])})


@dataclass(frozen=True)
class Reply:
    state: State
    said: tuple[str, ...]
    prompt: str | None = None
    question: Question | None = None
    rule: Rule | None = None

    @property
    def messages(self) -> list[str]:
        """Everything the patient is told, in order; the prompt (a question) is always last."""
        return [*self.said, *([self.prompt] if self.prompt else [])]


class EngineError(Exception):
    """The engine was asked to do something impossible, e.g. resume a finished conversation."""


def start(protocol: Protocol, channel: str, text: str = "") -> Reply:
    """Open a conversation. `text` is the first SMS, read for volunteered red flags."""
    if channel not in CHANNELS:
        raise EngineError(f"unknown channel {channel!r}")
    state = _with_volunteered(protocol, State(channel, protocol.version), text)
    emergency = _emergency(protocol, state)
    if emergency:
        return _finish(protocol, state, emergency, ())
    return _next(protocol, state, (protocol.text("greeting", channel),))


def restore(protocol: Protocol, channel: str, facts: dict[str, FactValue]) -> Reply:
    """Pick a conversation up again from its durable facts when the live state is lost.

    The next unanswered question is asked again; a finished case is finished the same way.
    """
    state = State(channel, protocol.version, facts=dict(facts))
    emergency = _emergency(protocol, state)
    if emergency:
        return _finish(protocol, state, emergency, ())
    return _next(protocol, state, ())


def resume(protocol: Protocol, state: State, given: Input) -> Reply:
    if state.is_done or state.current is None:
        raise EngineError("the conversation has already ended")
    question = protocol.question(state.current)
    state = _with_volunteered(protocol, state, given.text)
    if _is_repeat(question, given) and not _emergency(protocol, state):
        return _ask(protocol, state, question, ())

    said: tuple[str, ...] = ()
    value = _read(question, given)
    if state.facts.get(question.id) is True:
        value = True  # volunteered in this very message: that is the answer
    needs_reask = value is _UNCLEAR
    if value is _UNCLEAR:
        attempts = state.attempts + 1
        if attempts > REASKS[state.channel]:
            policy = question.on_silence if given.silent else question.on_unclear
            value = True if policy == "treat_as_yes" else None
            said = (protocol.text("treated_as_yes" if value else "skipped", state.channel),)
            needs_reask = False
        state = replace(state, attempts=attempts)
    elif value is _HEDGED:
        value = True
        said = (protocol.text("treated_as_yes", state.channel),)
    if not needs_reask:
        hedged = state.hedged + ((question.id,) if said and value is True else ())
        state = _set(protocol, replace(state, hedged=hedged), question.id, value)

    emergency = _emergency(protocol, state)
    if emergency:
        return _finish(protocol, state, emergency, ())
    if needs_reask:
        lead = "no_answer" if given.silent else "not_understood"
        return _ask(protocol, state, question, (protocol.text(lead, state.channel),))
    return _next(protocol, state, said)


def red_flags(state: State) -> list[str]:
    return [fact for fact, value in state.facts.items() if value is True]


def provisional_level(protocol: Protocol, state: State) -> Level | None:
    """The highest level the answers so far reach, ignoring the default routine rule.

    Used when a conversation is abandoned: an urgent-level answer is escalated, never dropped.
    """
    levels = [r.level for r in protocol.rules if r.when != "always" and holds(r.when, state.facts)]
    return max(levels, key=lambda level: level.rank, default=None)


def summary(protocol: Protocol, state: State) -> str:
    """One line a clinician can act on, e.g. '62y: fever + IV drug use'. No transcript."""
    age = state.facts.get("age")
    head = f"{int(age)}y" if isinstance(age, (int, float)) and not isinstance(age, bool) else "age unknown"
    flags = " + ".join(protocol.fact_labels.get(f, f) for f in red_flags(state))
    return f"{head}: {flags or 'no red flags'}"


# --- internals -----------------------------------------------------------------------------

_UNCLEAR = object()
_HEDGED = object()


def _read(question: Question, given: Input) -> Any:
    if given.silent:
        return _UNCLEAR
    low_confidence = given.confidence is not None and given.confidence < MIN_SPEECH_CONFIDENCE
    if question.is_number:
        return _read_number(question, given, low_confidence)
    if given.digits:
        return {"1": True, "2": False}.get(given.digits.strip("#"), _UNCLEAR)
    if low_confidence:
        return _UNCLEAR
    answer = read_yes_no(given.text)
    return {YesNo.YES: True, YesNo.NO: False, YesNo.HEDGED: _HEDGED}.get(answer, _UNCLEAR)


def _read_number(question: Question, given: Input, low_confidence: bool) -> Any:
    if given.digits:
        keyed = given.digits.strip("#")
        # ASCII only: "²".isdigit() is true but float("²") raises.
        is_number = keyed.isascii() and keyed.isdigit() and len(keyed) <= 6
        value: float | None = float(keyed) if is_number else None
    elif low_confidence:
        value = None
    elif question.unit == "weeks":
        value = read_duration_weeks(given.text)
    else:
        value = read_number(given.text)
    assert question.range is not None
    low, high = question.range
    return value if value is not None and low <= value <= high else _UNCLEAR


def _is_repeat(question: Question, given: Input) -> bool:
    return bool(given.digits) and given.digits.strip("#") == REPEAT_KEYS[question.kind]


def _with_volunteered(protocol: Protocol, state: State, text: str) -> State:
    for fact in volunteered(protocol, text):
        if state.facts.get(fact) is not True:
            state = _set(protocol, state, fact, True)
            state = replace(state, volunteered=state.volunteered + (fact,))
    return state


def _set(protocol: Protocol, state: State, fact: str, value: FactValue) -> State:
    facts = dict(state.facts)
    if facts.get(fact) is not True:  # a yes is never taken back by a later no
        facts[fact] = value
    if value is True:
        for implied in protocol.implies.get(fact, ()):
            facts[implied] = True
    return replace(state, facts=facts)


def _emergency(protocol: Protocol, state: State) -> Rule | None:
    return next(
        (r for r in protocol.rules if r.level is Level.EMERGENCY and holds(r.when, state.facts)),
        None,
    )


def _next(protocol: Protocol, state: State, said: tuple[str, ...]) -> Reply:
    for question in protocol.questions:
        if question.id in state.facts:
            continue
        if question.ask_if is None or holds(question.ask_if, state.facts):
            return _ask(protocol, replace(state, current=question.id, attempts=0), question, said)
    final = _final_rule(protocol, state)
    return _finish(protocol, state, final, said)


def _final_rule(protocol: Protocol, state: State) -> Rule:
    matching = [r for r in protocol.rules if holds(r.when, state.facts)]
    return max(matching, key=lambda r: r.level.rank)  # max keeps the first of equals: file order


def _ask(protocol: Protocol, state: State, question: Question, said: tuple[str, ...]) -> Reply:
    if state.channel == "sms":
        prompt = question.sms
    else:
        hint = protocol.text("number_hint" if question.is_number else "yes_no_hint", "voice")
        prompt = f"{question.voice} {hint}"
    return Reply(state, said, prompt, question)


def _finish(protocol: Protocol, state: State, rule: Rule, said: tuple[str, ...]) -> Reply:
    done = replace(state, current=None, attempts=0, disposition=rule.level.value, rule=rule.id,
                   outcome=rule.outcome)
    messages = protocol.outcome_messages(rule.outcome, state.channel)
    # The emergency instruction comes first and alone (CLINICAL s1 principle 2).
    lead = () if rule.level is Level.EMERGENCY else said
    return Reply(done, (*lead, *messages), None, None, rule)
