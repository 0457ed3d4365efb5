"""Load the clinical protocol from flows/ and check it, first for shape (JSON Schema), then for meaning."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Union

import jsonschema
import yaml

PROTOCOL_FILE = "protocol.yaml"
FREE_TEXT_FILE = "free_text.yaml"
CHAIN_FILE = "escalation.yaml"
DEFAULT_CALLBACK_WINDOW = "about 1 hour"

Condition = Union[str, Mapping[str, Any]]
Facts = Mapping[str, Union[bool, float, None]]


class Level(str, Enum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return ("routine", "urgent", "emergency").index(self.value)


class ProtocolError(Exception):
    """A protocol file that is malformed or inconsistent; names the file and the path inside it."""

    def __init__(self, file: str, path: str, message: str) -> None:
        super().__init__(f"{file}: {path or '(top)'}: {message}")
        self.file, self.path, self.message = file, path, message


@dataclass(frozen=True)
class Question:
    id: str
    sms: str
    voice: str
    on_unclear: str
    on_silence: str
    source: str
    kind: str = "yes_no"
    unit: str | None = None
    range: tuple[float, float] | None = None
    ask_if: Condition | None = None

    @property
    def fact(self) -> str:
        return self.id

    @property
    def is_number(self) -> bool:
        return self.kind == "number"


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    outcome: str
    when: Condition
    source: str


@dataclass(frozen=True)
class Outcome:
    id: str
    sms: tuple[str, ...]
    voice: tuple[str, ...]
    safety_net: bool = False


@dataclass(frozen=True)
class Phrase:
    fact: str
    patterns: tuple[re.Pattern[str], ...]
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    unless: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Protocol:
    id: str
    version: str
    title: str
    texts: Mapping[str, Mapping[str, str]]
    fact_labels: Mapping[str, str]
    implies: Mapping[str, tuple[str, ...]]
    questions: tuple[Question, ...]
    rules: tuple[Rule, ...]
    safety_net: Mapping[str, str]
    outcomes: Mapping[str, Outcome]
    phrases: tuple[Phrase, ...] = ()
    negation: re.Pattern[str] = field(default_factory=lambda: re.compile(r"(?!)"))

    def question(self, question_id: str) -> Question:
        return next(q for q in self.questions if q.id == question_id)

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    def text(self, key: str, channel: str) -> str:
        return self.texts[key].get(channel, "")

    def outcome_messages(self, outcome_id: str, channel: str) -> list[str]:
        outcome = self.outcomes[outcome_id]
        messages = list(outcome.sms if channel == "sms" else outcome.voice)
        if outcome.safety_net:
            messages.append(self.safety_net[channel])
        return messages


def holds(condition: Condition, facts: Facts) -> bool:
    """Evaluate a rule condition; unknown facts count as false."""
    if condition == "always":
        return True
    if isinstance(condition, str):
        return facts.get(condition) is True
    if "any" in condition:
        return any(holds(c, facts) for c in condition["any"])
    if "all" in condition:
        return all(holds(c, facts) for c in condition["all"])
    if "none" in condition:
        return not any(holds(c, facts) for c in condition["none"])
    value = facts.get(condition["fact"])
    if value is None or isinstance(value, bool):
        return False
    if "below" in condition:
        return value < condition["below"]
    return value >= condition["at_least"]


def _parts(condition: Mapping[str, Any]) -> list[Condition] | None:
    for combinator in ("any", "all", "none"):
        if combinator in condition:
            return list(condition[combinator])
    return None


def facts_in(condition: Condition) -> set[str]:
    if condition == "always":
        return set()
    if isinstance(condition, str):
        return {condition}
    parts = _parts(condition)
    if parts is not None:
        return set().union(*(facts_in(c) for c in parts))
    return {condition["fact"]}


def thresholds(condition: Condition) -> dict[str, set[float]]:
    """Numbers that rules compare a fact with: the checker tries both sides of each."""
    if isinstance(condition, str):
        return {}
    parts = _parts(condition)
    if parts is not None:
        found: dict[str, set[float]] = {}
        for c in parts:
            for fact, values in thresholds(c).items():
                found.setdefault(fact, set()).update(values)
        return found
    return {condition["fact"]: {condition.get("below", condition.get("at_least"))}}


def load(flows_dir: Path | str) -> Protocol:
    flows = Path(flows_dir)
    raw = _read_checked(flows, PROTOCOL_FILE, "protocol.schema.json")
    free = _read_checked(flows, FREE_TEXT_FILE, "free_text.schema.json")
    return _build(_with_callback_window(raw, flows), free)


def _with_callback_window(raw: Mapping[str, Any], flows: Path) -> Mapping[str, Any]:
    """The urgent outcome promises the callback window of the escalation chain beside it."""
    chain_file = flows / CHAIN_FILE
    window = DEFAULT_CALLBACK_WINDOW
    if chain_file.exists():
        try:
            window = yaml.safe_load(chain_file.read_text(encoding="utf-8"))["chains"]["urgent"]["callback_window"]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise ProtocolError(str(chain_file), "chains.urgent.callback_window", f"missing: {exc}") from exc
    text = json.dumps(raw).replace("{urgent_callback_window}", str(window).replace('"', "'"))
    return json.loads(text)


def from_data(raw: Mapping[str, Any], free: Mapping[str, Any], schema_dir: Path | str) -> Protocol:
    """Build a protocol from already-parsed data (used by tests that break a protocol on purpose)."""
    _validate(raw, Path(schema_dir) / "protocol.schema.json", PROTOCOL_FILE)
    _validate(free, Path(schema_dir) / "free_text.schema.json", FREE_TEXT_FILE)
    return _build(raw, free)


def _read_checked(flows: Path, name: str, schema_name: str) -> Any:
    path = flows / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProtocolError(str(path), "", f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProtocolError(str(path), "", f"not valid YAML: {exc}") from exc
    _validate(data, flows / schema_name, str(path))
    return data


def _validate(data: Any, schema_path: Path, file: str) -> None:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ProtocolError(file, _json_path(best.absolute_path), best.message)


def _json_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _build(raw: Mapping[str, Any], free: Mapping[str, Any]) -> Protocol:
    facts = raw["facts"]
    questions = tuple(_question(q) for q in raw["questions"])
    rules = tuple(
        Rule(r["id"], Level(r["level"]), r["outcome"], r["when"], r["source"]) for r in raw["rules"]
    )
    outcomes = {
        key: Outcome(key, tuple(o["sms"]), tuple(o["voice"]), bool(o.get("safety_net", False)))
        for key, o in raw["outcomes"].items()
    }
    phrases = tuple(_phrase(i, p) for i, p in enumerate(free["phrases"]))
    protocol = Protocol(
        id=raw["id"],
        version=str(raw["version"]),
        title=raw["title"],
        texts=raw["texts"],
        fact_labels={k: v["label"] for k, v in facts.items()},
        implies={k: tuple(v.get("implies", ())) for k, v in facts.items()},
        questions=questions,
        rules=rules,
        safety_net=raw["safety_net"],
        outcomes=outcomes,
        phrases=phrases,
        negation=_compile(free["negation"], FREE_TEXT_FILE, "negation"),
    )
    _check_meaning(protocol, raw)
    return protocol


def _question(q: Mapping[str, Any]) -> Question:
    return Question(
        id=q["id"], sms=q["sms"], voice=q["voice"], on_unclear=q["on_unclear"],
        on_silence=q["on_silence"], source=q["source"], kind=q.get("kind", "yes_no"),
        unit=q.get("unit"), range=tuple(q["range"]) if "range" in q else None,  # type: ignore[arg-type]
        ask_if=q.get("ask_if"),
    )


def _phrase(index: int, p: Mapping[str, Any]) -> Phrase:
    where = f"phrases[{index}]"
    return Phrase(
        fact=p["fact"],
        patterns=tuple(
            _compile(pat, FREE_TEXT_FILE, f"{where}.patterns[{i}]") for i, pat in enumerate(p["patterns"])
        ),
        examples=tuple(p["examples"]),
        counter_examples=tuple(p.get("not", ())),
        unless=_compile(p["unless"], FREE_TEXT_FILE, f"{where}.unless") if "unless" in p else None,
    )


def _compile(pattern: str, file: str, path: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ProtocolError(file, path, f"bad regular expression: {exc}") from exc


def _check_meaning(p: Protocol, raw: Mapping[str, Any]) -> None:
    known = set(p.fact_labels)

    def need_facts(names: set[str], path: str, file: str = PROTOCOL_FILE) -> None:
        for name in sorted(names - known):
            raise ProtocolError(file, path, f"unknown fact '{name}' (add it under facts:)")

    for fact, implied in p.implies.items():
        need_facts(set(implied), f"facts.{fact}.implies")
    seen: set[str] = set()
    for i, q in enumerate(p.questions):
        path = f"questions[{i}]"
        if q.id in seen:
            raise ProtocolError(PROTOCOL_FILE, f"{path}.id", f"question '{q.id}' is listed twice")
        seen.add(q.id)
        need_facts({q.id}, f"{path}.id")
        if q.ask_if is not None:
            need_facts(facts_in(q.ask_if), f"{path}.ask_if")
        if q.is_number and (q.unit is None or q.range is None):
            raise ProtocolError(PROTOCOL_FILE, path, "a number question needs a unit and a range")
        if q.on_unclear == "skip" and not q.is_number:
            raise ProtocolError(
                PROTOCOL_FILE, f"{path}.on_unclear",
                "a yes/no red-flag question must treat an unclear answer as yes (CLINICAL.md s1.4)",
            )
    rule_ids: set[str] = set()
    for i, r in enumerate(p.rules):
        path = f"rules[{i}]"
        if r.id in rule_ids:
            raise ProtocolError(PROTOCOL_FILE, f"{path}.id", f"rule '{r.id}' is listed twice")
        rule_ids.add(r.id)
        need_facts(facts_in(r.when), f"{path}.when")
        if r.outcome not in p.outcomes:
            raise ProtocolError(PROTOCOL_FILE, f"{path}.outcome", f"unknown outcome '{r.outcome}'")
    if not any(r.when == "always" for r in p.rules):
        raise ProtocolError(PROTOCOL_FILE, "rules", "needs a last rule with `when: always`")
    for i, ph in enumerate(p.phrases):
        need_facts({ph.fact}, f"phrases[{i}].fact", FREE_TEXT_FILE)
    for key in ("sms", "voice"):
        if key not in p.safety_net:
            raise ProtocolError(PROTOCOL_FILE, f"safety_net.{key}", "missing")
