"""Golden conversations: every case in flows/golden/*.yaml, played through the engine turn by turn."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from telehealth.settings import ROOT
from telehealth.triage import engine
from telehealth.triage.checker import is_emergency_instruction
from telehealth.triage.engine import Input, Reply
from telehealth.triage.protocol import Protocol

GOLDEN = ROOT / "flows" / "golden"
CASE_KEYS = {"name", "channel", "rule", "disposition", "turns"}
OPTIONAL_CASE_KEYS = {"why"}
ACTIONS = {"sms": {"patient"}, "voice": {"call", "digits", "speech", "silence"}}
TURN_EXTRAS = {"expect", "expect_not", "confidence"}


@dataclass(frozen=True)
class Case:
    file: str
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}: {self.data.get('name')}"


def _cases() -> list[Case]:
    return [
        Case(path.name, data)
        for path in sorted(GOLDEN.glob("*.yaml"))
        for data in yaml.safe_load(path.read_text(encoding="utf-8")) or []
    ]


CASES = _cases()


def _words(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _input(turn: dict[str, Any]) -> Input:
    if "patient" in turn:
        return Input(text=turn["patient"])
    if "digits" in turn:
        return Input(digits=str(turn["digits"]))
    if turn.get("silence") is True:
        return Input(silent=True)
    return Input(text=turn["speech"], confidence=turn.get("confidence"))


def _open(protocol: Protocol, channel: str, first: dict[str, Any]) -> Reply:
    if channel == "sms":
        return engine.start(protocol, "sms", first["patient"])
    assert first.get("call") is True, "a voice case starts with `call: true`"
    return engine.start(protocol, "voice")


def _problems(case: Case) -> list[str]:
    data, found = case.data, []
    missing, unknown = CASE_KEYS - set(data), set(data) - CASE_KEYS - OPTIONAL_CASE_KEYS
    if missing or unknown:
        return [f"missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"]
    if data["channel"] not in ACTIONS:
        return [f"channel must be sms or voice, not {data['channel']!r}"]
    if not data["turns"]:
        return ["no turns"]
    for n, turn in enumerate(data["turns"], start=1):
        actions = set(turn) & (ACTIONS["sms"] | ACTIONS["voice"])
        if len(actions) != 1 or not actions <= ACTIONS[data["channel"]]:
            found.append(f"turn {n}: needs exactly one of {sorted(ACTIONS[data['channel']])}")
        if set(turn) - actions - TURN_EXTRAS:
            found.append(f"turn {n}: unknown keys {sorted(set(turn) - actions - TURN_EXTRAS)}")
        if not turn.get("expect"):
            found.append(f"turn {n}: says nothing about the reply (add `expect`)")
    return found


def test_golden_files_exist_and_are_well_formed() -> None:
    assert CASES, f"no golden conversations in {GOLDEN}"
    problems = [f"{case.id}: {p}" for case in CASES for p in _problems(case)]
    assert not problems, "\n".join(problems)


def test_case_names_are_unique() -> None:
    ids = [case.data.get("name") for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_rule_has_a_golden_case(protocol: Protocol) -> None:
    covered = {case.data.get("rule") for case in CASES}
    assert [r.id for r in protocol.rules if r.id not in covered] == []


def test_both_channels_are_covered_for_every_level() -> None:
    pairs = {(case.data.get("channel"), case.data.get("disposition")) for case in CASES}
    assert pairs == {(c, d) for c in ("sms", "voice") for d in ("emergency", "urgent", "routine")}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_conversation(protocol: Protocol, case: Case) -> None:
    assert not _problems(case), _problems(case)
    data, channel = case.data, case.data["channel"]
    turns = data["turns"]
    reply = _open(protocol, channel, turns[0])
    for n, turn in enumerate(turns, start=1):
        if n > 1:
            assert not reply.state.is_done, f"turn {n}: the conversation had already ended"
            reply = engine.resume(protocol, reply.state, _input(turn))
        said = "\n".join(reply.messages)
        for words in _words(turn["expect"]):
            assert words in said, f"turn {n}: expected {words!r} in the reply:\n{said}"
        for words in _words(turn.get("expect_not")):
            assert words not in said, f"turn {n}: {words!r} must not be in the reply:\n{said}"
        if n < len(turns):
            assert reply.prompt is not None and reply.messages[-1] == reply.prompt, (
                f"turn {n}: the conversation goes on, so the reply must end with one question:\n{said}"
            )

    final = "\n".join(reply.messages)
    assert (reply.state.disposition, reply.state.rule) == (data["disposition"], data["rule"]), final
    if data["disposition"] == "emergency":
        assert is_emergency_instruction(reply.messages), final
    else:
        assert protocol.safety_net[channel] in final
        assert "?" not in final
