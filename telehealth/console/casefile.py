"""One conversation as a clinician reads it: the chat, the red flags and rules, the escalation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telehealth.alerts import Alerts
from telehealth.notes import Notes
from telehealth.records import Records
from telehealth.triage.protocol import Protocol, facts_in, holds


@dataclass(frozen=True)
class ChatLine:
    at: datetime
    by_patient: bool
    text: str
    question: str | None = None
    digits: str | None = None
    speech: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class FiredRule:
    id: str
    level: str
    source: str
    because: list[str]
    decided: bool


@dataclass(frozen=True)
class Casefile:
    conversation: dict[str, Any]
    chat: list[ChatLine]
    red_flags: list[str]
    rules: list[FiredRule]
    protocol_is_current: bool
    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)


def load(records: Records, protocol: Protocol, conversation_id: int) -> Casefile | None:
    conv = records.get_conversation(conversation_id)
    if conv is None:
        return None
    escalation = conv["escalation"]
    return Casefile(
        conversation=conv,
        chat=[_chat_line(t, protocol) for t in conv["turns"]],
        red_flags=[protocol.fact_labels.get(f, f.replace("_", " ")) for f in conv["red_flags"]],
        rules=fired_rules(protocol, conv["facts"], conv["rule"]),
        protocol_is_current=conv["protocol_version"] == protocol.version,
        timeline=[]
        if escalation is None
        else [
            (datetime.fromisoformat(e["at"]), event_words(e["kind"], e["detail"]))
            for e in escalation["events"]
        ],
        alerts=[] if escalation is None else Alerts(records).for_escalation(escalation["id"]),
        notes=Notes(records).for_conversation(conversation_id),
    )


def _chat_line(turn: dict[str, Any], protocol: Protocol) -> ChatLine:
    question = None
    if turn["question_id"]:
        try:
            question = protocol.question(turn["question_id"]).fact
        except StopIteration:
            question = turn["question_id"]
        question = protocol.fact_labels.get(question, question.replace("_", " "))
    return ChatLine(
        at=datetime.fromisoformat(turn["at"]),
        by_patient=turn["direction"] == "in",
        text=turn["text"],
        question=question,
        digits=turn["digits"],
        speech=turn["speech"],
        confidence=turn["confidence"],
    )


def fired_rules(protocol: Protocol, facts: dict[str, Any], decided: str | None) -> list[FiredRule]:
    """Every red-flag rule the answers meet, the one that decided the outcome first."""
    true_facts = {f for f, v in facts.items() if v is True}
    found = []
    for rule in protocol.rules:
        if rule.when == "always" or not holds(rule.when, facts):
            continue
        because = [protocol.fact_labels.get(f, f) for f in sorted(facts_in(rule.when) & true_facts)]
        found.append(FiredRule(rule.id, rule.level.value, rule.source, because, rule.id == decided))
    if decided and not any(r.decided for r in found):
        try:
            rule = protocol.rule(decided)
            found.append(FiredRule(rule.id, rule.level.value, rule.source, [], True))
        except StopIteration:
            found.append(FiredRule(decided, "", "not in the current protocol", [], True))
    return sorted(found, key=lambda r: not r.decided)


def event_words(kind: str, d: dict[str, Any]) -> str:
    """An escalation event in plain words. Details hold staff names and statuses, never patients."""
    to, channel = d.get("to", "someone"), d.get("channel", "")
    texts = {
        "started": lambda: (
            f"Escalation started: {d.get('level', '')}"
            + (" (patient stopped replying)" if d.get("reason") == "abandoned" else "")
        ),
        "step": lambda: (
            f"Step {int(d.get('step', 0)) + 1}, round {d.get('round', 1)}: paging "
            f"{d.get('to', '')}: "
            + (", ".join(f"{p['name']} by {p['channel']}" for p in d.get("pages", [])) or "nobody")
        ),
        "roster_gap": lambda: f"Nobody on call as {d.get('tier', '')}",
        "alert_sent": lambda: f"Page sent to {to} by {channel}",
        "notice_sent": lambda: f"{to} told the case was taken ({channel})",
        "delivery": lambda: (
            f"Page to {to} by {channel}: {d.get('status', '')}"
            + (f" (error {d['error']})" if d.get("error") else "")
        ),
        "alert_retry": lambda: f"Page to {to} by {channel} failed ({d.get('error', '')}); retrying",
        "alert_failed": lambda: f"Page to {to} by {channel} failed ({d.get('error', '')})",
        "sms_opted_out": lambda: f"{to} has opted out of texts: calling instead",
        "acknowledged": lambda: f"Taken by {d.get('by', '')}",
        "unacknowledged": lambda: f"Nobody took the case after {d.get('after_rounds', '')} rounds",
    }
    text = texts.get(kind)
    return text() if text else kind.replace("_", " ").capitalize()
