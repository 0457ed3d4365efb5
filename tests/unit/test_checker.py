"""`telehealth check-flows`: the path checker proves the protocol's safety properties, and catches their breach."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telehealth import cli
from telehealth.triage import checker
from telehealth.triage import protocol as protocol_module
from telehealth.triage.protocol import Protocol
from tests.unit.test_protocol import FREE_TEXT, PROTOCOL, copy_flows, edit

CONFIRM = "Are you sure? Reply YES or NO."


def broken(tmp_path: Path, file: str, change: Any) -> Path:
    folder = copy_flows(tmp_path)
    edit(folder, file, change)
    return folder


def check(folder: Path) -> checker.Report:
    return checker.check(protocol_module.load(folder))


def _question(data: dict[str, Any], question_id: str) -> dict[str, Any]:
    return next(q for q in data["questions"] if q["id"] == question_id)


def _phrase(data: dict[str, Any], fact: str) -> dict[str, Any]:
    return next(p for p in data["phrases"] if p["fact"] == fact)


def saddle_numbness_asks_again(data: dict[str, Any]) -> None:
    """The emergency rule for saddle numbness leads to a question instead of the instruction."""
    data["outcomes"]["confirm"] = {"sms": [CONFIRM], "voice": [CONFIRM]}
    next(r for r in data["rules"] if r["id"] == "cauda_equina_saddle")["outcome"] = "confirm"


def test_the_real_protocol_passes(protocol: Protocol) -> None:
    report = checker.check(protocol)
    assert report.ok, "\n".join(report.problems)
    assert report.asked == {q.id for q in protocol.questions}
    assert report.paths > 100


def test_check_flows_exits_0_on_the_real_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-flows"]) == 0
    assert "all safety properties hold" in capsys.readouterr().out


def test_check_flows_fails_on_a_folder_that_does_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = broken(tmp_path, PROTOCOL, lambda data: data["rules"][0].update(outcome="go_home"))
    assert cli.main(["check-flows", "--flows", str(folder)]) != 0
    assert "rules[0].outcome: unknown outcome 'go_home'" in capsys.readouterr().err


def test_check_flows_fails_naming_an_emergency_rule_that_asks_instead_of_instructing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = broken(tmp_path, PROTOCOL, saddle_numbness_asks_again)
    assert cli.main(["check-flows", "--flows", str(folder)]) == 1
    failures = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAIL ")]
    named = [line for line in failures if "rule 'cauda_equina_saddle'" in line]
    assert any("is not the emergency instruction; sms path" in line for line in named)
    assert any("is not the emergency instruction; voice path" in line for line in named)
    assert any("a question is asked after the disposition" in line for line in failures)
    # No other rule is blamed.
    assert all("cauda_equina_saddle" in line or "rule '" not in line for line in failures)


def test_an_sms_text_that_would_not_fit_one_segment_is_named(tmp_path: Path) -> None:
    def spoil_sms_texts(data: dict[str, Any]) -> None:
        _question(data, "chest_pain")["sms"] = (
            "Do you have chest pain or pressure, or is it hard to breathe, or does your chest feel tight or "
            "heavy when you walk or climb the stairs or lie down? Reply YES or NO.")
        _question(data, "fever")["sms"] = "Do you have a fever? Don\u2019t guess. Reply YES or NO."
        data["texts"]["greeting"]["sms"] = "Back pain line \u2014 call 911 if this is an emergency."
        data["outcomes"]["routine"]["sms"].append("Feel better soon \U0001F60A")

    report = check(broken(tmp_path, PROTOCOL, spoil_sms_texts))
    assert sorted(report.problems) == sorted([
        "questions.chest_pain.sms: 164 GSM-7 characters, over one segment (160)",
        "questions.fever.sms: characters outside GSM-7 ['\u2019'] would cut the SMS limit to 70",
        "texts.greeting.sms: characters outside GSM-7 ['\u2014'] would cut the SMS limit to 70",
        "outcomes.routine.sms[3]: characters outside GSM-7 ['\U0001F60A'] would cut the SMS limit to 70",
    ])


def test_a_question_that_can_never_be_asked_is_reported(tmp_path: Path) -> None:
    def ask_about_blood_thinners(data: dict[str, Any]) -> None:
        data["facts"]["blood_thinners"] = {"label": "on blood thinners"}
        data["facts"]["bleed_signs"] = {"label": "new weakness on blood thinners"}
        data["questions"].append({
            "id": "bleed_signs", "ask_if": "blood_thinners",  # nothing ever sets blood_thinners
            "sms": "Is the weakness new? Reply YES or NO.", "voice": "Is the weakness new?",
            "on_unclear": "treat_as_yes", "on_silence": "treat_as_yes", "source": "test",
        })

    report = check(broken(tmp_path, PROTOCOL, ask_about_blood_thinners))
    assert report.problems == ["question 'bleed_signs' is never asked on any path"]


def test_free_text_examples_that_do_not_behave_are_reported(tmp_path: Path) -> None:
    def add_examples(data: dict[str, Any]) -> None:
        _phrase(data, "cancer_history")["examples"].append("I had the big C")
        _phrase(data, "fever").setdefault("not", []).append("I had a fever")

    report = check(broken(tmp_path, FREE_TEXT, add_examples))
    assert sorted(report.problems) == [
        "free_text: 'I had a fever' must not match fever but does",
        "free_text: example 'I had the big C' does not match cancer_history",
    ]


def test_a_volunteered_emergency_phrase_that_misses_its_fact_is_reported(tmp_path: Path) -> None:
    """An emergency phrase whose example no longer triggers the emergency fails on every question."""
    def weaken(data: dict[str, Any]) -> None:
        _phrase(data, "foot_drop").update(patterns=["\\bfoot drop\\b"], examples=["foot drop", "my foot flops"])

    report = check(broken(tmp_path, FREE_TEXT, weaken))
    assert "free_text: example 'my foot flops' does not match foot_drop" in report.problems
    assert any("volunteering 'my foot flops' (foot_drop)" in p for p in report.problems)


@pytest.mark.parametrize(("messages", "is_instruction"), [
    (["Call 911 now."], True),
    (["This may be an emergency. Call 911 or go to the nearest emergency room now. Do not drive yourself."], True),
    (["Call 9-1-1 now."], True),
    (["Please call nine one one now."], True),
    (["Call 911 now.", "We are alerting our on-call doctor."], True),
    (["If this is a life-threatening emergency, call 911 now."], False),    # the greeting
    (["Call 911 or go to the ER now if it gets hard to pee or poop."], False),  # the safety-net
    (["Call 911 unless you feel better."], False),
    (["In case it gets worse, call 911."], False),
    (["Call 911 now. Are you alone?"], False),                              # a question after it
    (["Call 911 now.", "Are you sure? Reply YES or NO."], False),
    (["Go to the emergency room now."], False),                             # no 911
    (["Call 9111 now."], False),
    ([], False),
])
def test_what_counts_as_the_emergency_instruction(messages: list[str], is_instruction: bool) -> None:
    assert checker.is_emergency_instruction(messages) is is_instruction
