"""Loading flows/: the real protocol loads, and a broken one says which file and which line of it is wrong."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from telehealth.settings import ROOT
from telehealth.triage import protocol as protocol_module
from telehealth.triage.protocol import Level, Protocol, ProtocolError

PROTOCOL, FREE_TEXT = "protocol.yaml", "free_text.yaml"
Edit = Callable[[Any], None]


def copy_flows(target: Path) -> Path:
    """The real flows folder (YAML and JSON Schema files), to break on purpose."""
    for source in (ROOT / "flows").iterdir():
        if source.suffix in (".yaml", ".json"):
            shutil.copy(source, target / source.name)
    return target


def edit(folder: Path, name: str, change: Edit) -> None:
    data = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    change(data)
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def set_(path: tuple[Any, ...], value: Any) -> Edit:
    return lambda data: _parent(data, path).__setitem__(path[-1], value)


def delete(path: tuple[Any, ...]) -> Edit:
    return lambda data: _parent(data, path).__delitem__(path[-1])


def repeat(path: tuple[Any, ...]) -> Edit:
    """Insert a copy of a list item right after it."""
    return lambda data: _parent(data, path).insert(path[-1] + 1, dict(_parent(data, path)[path[-1]]))


def test_the_real_protocol_loads(protocol: Protocol) -> None:
    assert protocol.id == "back_pain_red_flags"
    assert protocol.questions[0].id == "age" and protocol.questions[0].is_number
    assert protocol.rules[-1].when == "always" and protocol.rules[-1].level is Level.ROUTINE
    assert {q.id for q in protocol.questions} <= set(protocol.fact_labels)
    assert {r.outcome for r in protocol.rules} <= set(protocol.outcomes)
    assert len({r.id for r in protocol.rules}) == len(protocol.rules)
    assert protocol.phrases and all(ph.examples for ph in protocol.phrases)


def test_a_copy_of_the_real_flows_loads_like_the_real_one(tmp_path: Path, protocol: Protocol) -> None:
    assert protocol_module.load(copy_flows(tmp_path)) == protocol


# Question indexes: 0 age, 4 bladder_problem, 6 saddle_numbness, 12 leg_weakness_one.
# Rule indexes: 0 chest_pain, 3 cauda_equina_bladder. Phrase indexes: 2 fainted, 11 iv_drug_use.
BROKEN = [
    ("rule names an unknown fact", PROTOCOL, set_(("rules", 0, "when"), {"all": ["chest_pain", "pregnant"]}),
     "rules[0].when", "unknown fact 'pregnant'"),
    ("rule points at an unknown outcome", PROTOCOL, set_(("rules", 3, "outcome"), "go_home"),
     "rules[3].outcome", "unknown outcome 'go_home'"),
    ("question without on_silence", PROTOCOL, delete(("questions", 4, "on_silence")),
     "questions[4]", "'on_silence' is a required property"),
    ("yes/no question skips an unclear answer", PROTOCOL, set_(("questions", 6, "on_unclear"), "skip"),
     "questions[6].on_unclear", "must treat an unclear answer as yes"),
    ("question listed twice", PROTOCOL, repeat(("questions", 4)), "questions[5].id", "listed twice"),
    ("rule listed twice", PROTOCOL, repeat(("rules", 0)), "rules[1].id", "listed twice"),
    ("ask_if names an unknown fact", PROTOCOL, set_(("questions", 12, "ask_if"), "numb_leg"),
     "questions[12].ask_if", "unknown fact 'numb_leg'"),
    ("implies names an unknown fact", PROTOCOL, set_(("facts", "major_trauma", "implies"), ["fracture"]),
     "facts.major_trauma.implies", "unknown fact 'fracture'"),
    ("number question without a range", PROTOCOL, delete(("questions", 0, "range")),
     "questions[0]", "needs a unit and a range"),
    ("no default rule", PROTOCOL, delete(("rules", -1)), "rules", "when: always"),
    ("schema: unknown level", PROTOCOL, set_(("rules", 0, "level"), "critical"),
     "rules[0].level", "'critical' is not one of"),
    ("schema: unknown key", PROTOCOL, set_(("questions", 1, "colour"), "red"),
     "questions[1]", "'colour' was unexpected"),
    ("schema: version not text", PROTOCOL, set_(("version",), 2026), "version", "is not of type 'string'"),
    ("schema: empty question text", PROTOCOL, set_(("questions", 1, "sms"), ""), "questions[1].sms", "should be non-empty"),
    ("bad regular expression", FREE_TEXT, set_(("phrases", 2, "patterns", 1), "\\b(passed out"),
     "phrases[2].patterns[1]", "bad regular expression"),
    ("bad `unless` expression", FREE_TEXT, set_(("phrases", 11, "unless"), "[epidural"),
     "phrases[11].unless", "bad regular expression"),
    ("bad negation expression", FREE_TEXT, set_(("negation",), "(no|not"), "negation", "bad regular expression"),
    ("phrase for an unknown fact", FREE_TEXT, set_(("phrases", 0, "fact"), "heart_attack"),
     "phrases[0].fact", "unknown fact 'heart_attack'"),
    ("schema: phrase without examples", FREE_TEXT, delete(("phrases", 0, "examples")),
     "phrases[0]", "'examples' is a required property"),
]


@pytest.mark.parametrize(("file", "change", "path", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_protocol_names_the_file_and_the_path(
    tmp_path: Path, file: str, change: Edit, path: str, words: str
) -> None:
    folder = copy_flows(tmp_path)
    edit(folder, file, change)
    with pytest.raises(ProtocolError) as caught:
        protocol_module.load(folder)
    error = caught.value
    assert Path(error.file).name == file
    assert error.path == path
    assert words in error.message
    assert str(error).startswith(error.file) and f": {path}: " in str(error)


@pytest.mark.parametrize("file", [PROTOCOL, FREE_TEXT])
def test_a_yaml_syntax_error_names_the_file(tmp_path: Path, file: str) -> None:
    folder = copy_flows(tmp_path)
    (folder / file).write_text("questions:\n  - id: age\n    sms: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="not valid YAML") as caught:
        protocol_module.load(folder)
    assert Path(caught.value.file) == folder / file
    assert "line 3" in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    folder = copy_flows(tmp_path)
    (folder / FREE_TEXT).unlink()
    with pytest.raises(ProtocolError, match="cannot read") as caught:
        protocol_module.load(folder)
    assert Path(caught.value.file) == folder / FREE_TEXT
