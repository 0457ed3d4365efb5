"""Prove the protocol's safety properties by walking every path of answers.

Properties (issue 2, CLINICAL.md s7): every path ends in a disposition; the reply to the answer
(or volunteered text) that completes an emergency rule is the emergency instruction; nothing is
asked after a disposition; an unclear answer or silence never leads lower than a yes; every
question is reachable; every SMS text fits one GSM-7 segment; the free-text examples match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from telehealth.triage import engine
from telehealth.triage.engine import Input, Reply
from telehealth.triage.free_text import volunteered
from telehealth.triage.gsm import SEGMENT, non_gsm_characters, septets
from telehealth.triage.protocol import Level, Protocol, Question, holds, thresholds

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
_MENTIONS_911 = re.compile(r"\b911\b|9-1-1|\b9 1 1\b|nine one one", re.I)
_CONDITIONAL = re.compile(r"\b(if|unless|in case|whether)\b", re.I)
_MAX_DEPTH = 200


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    paths: int = 0
    states: int = 0
    asked: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def is_emergency_instruction(messages: list[str]) -> bool:
    """A plain (not conditional) sentence that says 911, with nothing asked after it."""
    reply = "\n".join(messages)
    sentences = [s for s in _SENTENCE_END.split(reply) if s.strip()]
    for i, sentence in enumerate(sentences):
        rest = " ".join(sentences[i:])
        if _MENTIONS_911.search(sentence) and not _CONDITIONAL.search(sentence) and "?" not in rest:
            return True
    return False


def check(protocol: Protocol) -> Report:
    report = Report()
    _check_sms_texts(protocol, report)
    _check_phrases(protocol, report)
    for channel in engine.CHANNELS:
        walker = _Walker(protocol, channel, report)
        walker.visit(engine.start(protocol, channel), "start", 0)
    for question in protocol.questions:
        if question.id not in report.asked:
            report.add(f"question '{question.id}' is never asked on any path")
    return report


class _Walker:
    def __init__(self, protocol: Protocol, channel: str, report: Report) -> None:
        self.protocol, self.channel, self.report = protocol, channel, report
        self.memo: dict[tuple[object, ...], tuple[int, int]] = {}
        self.free_text_checked: set[str] = set()

    def visit(self, reply: Reply, path: str, depth: int) -> tuple[int, int]:
        """Check a reply and everything after it; return the (lowest, highest) level reachable."""
        state = reply.state
        if state.is_done:
            self.report.paths += 1
            if reply.prompt or any("?" in m for m in reply.messages):
                self.report.add(f"{self.channel}: a question is asked after the disposition ({path})")
            return (Level(state.disposition).rank,) * 2
        if depth > _MAX_DEPTH or reply.question is None:
            self.report.add(f"{self.channel}: path does not end in a disposition: {path}")
            return (0, 0)
        key = (state.current, state.attempts, tuple(sorted(state.facts.items())))
        if key in self.memo:
            return self.memo[key]
        self.report.states += 1
        self.report.asked.add(reply.question.id)
        self._check_volunteering(reply)
        outcomes: dict[str, tuple[int, int]] = {}
        for label, given in self._inputs(reply.question):
            outcomes[label] = self._step(reply, label, given, path, depth)
        if not reply.question.is_number:
            self._check_unclear_not_lower(reply.question, outcomes, path)
        result = (min(o[0] for o in outcomes.values()), max(o[1] for o in outcomes.values()))
        self.memo[key] = result
        return result

    def _step(self, reply: Reply, label: str, given: list[Input], path: str, depth: int) -> tuple[int, int]:
        state, nxt = reply.state, reply
        for one in given:  # an unclear answer or silence, repeated until its policy applies
            before = nxt.state
            nxt = engine.resume(self.protocol, before, one)
            self._check_emergency(before, nxt, f"{path} > {reply.question.id}={label}")  # type: ignore[union-attr]
            if nxt.state.is_done or nxt.state.current != state.current:
                break
        return self.visit(nxt, f"{path} > {reply.question.id}={label}", depth + 1)  # type: ignore[union-attr]

    def _inputs(self, question: Question) -> list[tuple[str, list[Input]]]:
        voice = self.channel == "voice"
        repeats = engine.REASKS[self.channel] + 1
        if question.is_number:
            values = self._boundary_numbers(question)
            branches = [(f"{v:g}", [Input(digits=f"{v:g}#") if voice else Input(text=f"{v:g}")]) for v in values]
            branches.append(("unclear", [Input(text="what", digits="")] * repeats))
        else:
            branches = [
                ("yes", [Input(digits="1") if voice else Input(text="yes")]),
                ("no", [Input(digits="2") if voice else Input(text="no")]),
                ("hedged", [Input(text="not sure, maybe", confidence=0.9 if voice else None)]),
                ("unclear", [Input(text="purple")] * repeats),
            ]
        if voice:
            branches.append(("silence", [Input(silent=True)] * repeats))
        return branches

    def _boundary_numbers(self, question: Question) -> list[float]:
        assert question.range is not None
        values = {question.range[0], question.range[1]}
        for rule in self.protocol.rules:
            for t in thresholds(rule.when).get(question.id, ()):
                values.update({t - 1, t})
        return sorted(v for v in values if question.range[0] <= v <= question.range[1])

    def _check_emergency(self, before: engine.State, reply: Reply, path: str) -> None:
        for rule in self.protocol.rules:
            if rule.level is not Level.EMERGENCY:
                continue
            if holds(rule.when, reply.state.facts) and not holds(rule.when, before.facts):
                if reply.state.disposition != Level.EMERGENCY.value or not is_emergency_instruction(
                    reply.messages
                ):
                    self.report.add(
                        f"rule '{rule.id}' ({rule.source}): the reply to the answer that completes it "
                        f"is not the emergency instruction; {self.channel} path {path}; "
                        f"reply was {reply.messages!r}"
                    )
                return

    def _check_volunteering(self, reply: Reply) -> None:
        """A volunteered emergency flag must trigger the instruction whatever was asked."""
        question = reply.question
        assert question is not None
        if question.id in self.free_text_checked:
            return
        self.free_text_checked.add(question.id)
        emergency_facts = {
            f for r in self.protocol.rules if r.level is Level.EMERGENCY and isinstance(r.when, str)
            for f in [r.when]
        }
        for phrase in self.protocol.phrases:
            if phrase.fact not in emergency_facts:
                continue
            for example in phrase.examples:
                after = engine.resume(self.protocol, reply.state, Input(text=example))
                if after.state.disposition != "emergency" or not is_emergency_instruction(after.messages):
                    self.report.add(
                        f"{self.channel}: volunteering '{example}' ({phrase.fact}) while asked "
                        f"'{question.id}' does not give the emergency instruction"
                    )

    def _check_unclear_not_lower(self, question: Question, outcomes: dict[str, tuple[int, int]], path: str) -> None:
        for label in ("unclear", "silence", "hedged"):
            if label in outcomes and outcomes[label][0] < outcomes["yes"][0]:
                self.report.add(
                    f"{self.channel}: an answer '{label}' to '{question.id}' can lead lower than a yes ({path})"
                )


def _check_sms_texts(protocol: Protocol, report: Report) -> None:
    texts = [(f"questions.{q.id}.sms", q.sms) for q in protocol.questions]
    texts += [(f"texts.{k}.sms", v["sms"]) for k, v in protocol.texts.items() if "sms" in v]
    texts += [(f"outcomes.{k}.sms[{i}]", t) for k, o in protocol.outcomes.items() for i, t in enumerate(o.sms)]
    texts.append(("safety_net.sms", protocol.safety_net["sms"]))
    for where, text in texts:
        bad = non_gsm_characters(text)
        if bad:
            report.add(f"{where}: characters outside GSM-7 {bad!r} would cut the SMS limit to 70")
        if septets(text) > SEGMENT:
            report.add(f"{where}: {septets(text)} GSM-7 characters, over one segment ({SEGMENT})")


def _check_phrases(protocol: Protocol, report: Report) -> None:
    for phrase in protocol.phrases:
        for example in phrase.examples:
            if phrase.fact not in volunteered(protocol, example):
                report.add(f"free_text: example '{example}' does not match {phrase.fact}")
        for counter in phrase.counter_examples:
            if phrase.fact in volunteered(protocol, counter):
                report.add(f"free_text: '{counter}' must not match {phrase.fact} but does")
