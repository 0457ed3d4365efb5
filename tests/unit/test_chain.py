"""The escalation chain as data: flows/escalation.yaml, its schema and its timetable."""
from __future__ import annotations

import copy
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from telehealth import chain
from telehealth.chain import Chain
from telehealth.settings import ROOT
from telehealth.triage.protocol import ProtocolError

START = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def chains() -> dict[str, dict[str, Any]]:
    return chain.load(ROOT / "flows")


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


@pytest.mark.parametrize(("index", "seconds", "to", "via", "round_"), [
    (0, 0, "primary", ("sms", "voice"), 0),
    (1, 120, "primary", ("voice",), 0),
    (2, 300, "backup", ("sms", "voice"), 0),
    (3, 600, "supervisor", ("sms", "voice"), 0),
    (4, 900, "primary", ("sms", "voice"), 1),  # the second round starts after round_seconds
    (5, 1020, "primary", ("voice",), 1),
    (11, 2400, "supervisor", ("sms", "voice"), 2),
])
def test_emergency_steps_run_at_their_time_in_each_round(
    chains: dict[str, Any], index: int, seconds: float, to: str, via: tuple[str, ...], round_: int,
) -> None:
    emergency = Chain(chains["emergency"])
    step = emergency.step(index)
    assert (step.to, step.via, step.round) == (to, via, round_)
    assert emergency.due_at(START, index) == _at(seconds)


@pytest.mark.parametrize(("level", "end_seconds", "total_steps"), [
    ("emergency", 3 * 900, 12),
    ("urgent", 2 * 1800, 8),
])
def test_the_chain_ends_after_its_last_round(
    chains: dict[str, Any], level: str, end_seconds: float, total_steps: int,
) -> None:
    timetable = Chain(chains[level])
    assert timetable.total_steps == total_steps
    assert timetable.due_at(START, total_steps) == _at(end_seconds)
    last = timetable.due_at(START, total_steps - 1)
    assert last < timetable.due_at(START, total_steps)


def test_urgent_timings_differ_from_emergency(chains: dict[str, Any]) -> None:
    def timetable(level: str) -> list[tuple[float, str, tuple[str, ...]]]:
        c = Chain(chains[level])
        return [((c.due_at(START, i) - START).total_seconds(), c.step(i).to, c.step(i).via) for i in range(4)]

    assert timetable("emergency") == [
        (0, "primary", ("sms", "voice")), (120, "primary", ("voice",)),
        (300, "backup", ("sms", "voice")), (600, "supervisor", ("sms", "voice"))]
    assert timetable("urgent") == [
        (0, "primary", ("sms",)), (300, "primary", ("voice",)),
        (600, "backup", ("sms",)), (1200, "supervisor", ("sms", "voice"))]


def test_callback_windows_come_from_the_chain(chains: dict[str, Any]) -> None:
    assert Chain(chains["urgent"]).callback_window == "about 1 hour"
    assert Chain(chains["emergency"]).callback_window == "a few minutes"


@pytest.mark.parametrize("after", [900, 901])
def test_a_step_at_or_after_the_end_of_its_round_is_refused(chains: dict[str, Any], after: int) -> None:
    snapshot = copy.deepcopy(chains["emergency"])
    snapshot["steps"][-1]["after_seconds"] = after
    with pytest.raises(ValueError, match="before its round ends"):
        Chain(snapshot)


# --- loading: schema errors name the path ----------------------------------------------------


def _edit(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()


def _flows_with(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    for name in ("escalation.schema.json",):
        shutil.copy(ROOT / "flows" / name, tmp_path / name)
    data = yaml.safe_load((ROOT / "flows" / "escalation.yaml").read_text(encoding="utf-8"))
    edit(data)
    (tmp_path / "escalation.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("path", "value", "where", "words"), [
    ("chains.emergency.steps.1.to", "nurse", "chains.emergency.steps.1.to", "nurse"),
    ("chains.urgent.steps.0.via", [], "chains.urgent.steps.0.via", "non-empty"),
    ("chains.urgent.steps.2.via", ["sms", "pager"], "chains.urgent.steps.2.via.1", "pager"),
    ("chains.urgent.rounds", 0, "chains.urgent.rounds", "minimum"),
    ("chains.emergency.round_seconds", 0, "chains.emergency.round_seconds", "minimum"),
    ("chains.emergency.steps.0.after_seconds", -5, "chains.emergency.steps.0.after_seconds", "minimum"),
    ("chains.emergency.callback_window", _DELETE, "chains.emergency", "callback_window"),
    ("chains.routine", {"rounds": 1}, "chains", "routine"),
    ("version", "one", "version", "integer"),
])
def test_schema_errors_name_the_path(tmp_path: Path, path: str, value: Any, where: str, words: str) -> None:
    flows = _flows_with(tmp_path, lambda data: _edit(data, path, value))
    with pytest.raises(ProtocolError) as caught:
        chain.load(flows)
    assert caught.value.file.endswith("escalation.yaml")
    assert caught.value.path == where
    assert words in caught.value.message
    assert where in str(caught.value)


@pytest.mark.parametrize(("path", "value", "words"), [
    ("chains.urgent.steps.3.after_seconds", 1800, "before its round ends"),
    ("chains.emergency.steps.1.after_seconds", 900, "before its round ends"),
    ("chains.emergency.steps.2.after_seconds", 60, "order they run"),  # listed after a 120 s step
])
def test_a_step_out_of_its_round_or_out_of_order_is_refused_with_its_path(
    tmp_path: Path, path: str, value: float, words: str,
) -> None:
    flows = _flows_with(tmp_path, lambda data: _edit(data, path, value))
    with pytest.raises(ProtocolError) as caught:
        chain.load(flows)
    assert caught.value.path == path
    assert words in caught.value.message


def test_an_unreadable_chain_file_is_a_protocol_error(tmp_path: Path) -> None:
    shutil.copy(ROOT / "flows" / "escalation.schema.json", tmp_path / "escalation.schema.json")
    (tmp_path / "escalation.yaml").write_text("chains: [unclosed", encoding="utf-8")
    with pytest.raises(ProtocolError, match="cannot read"):
        chain.load(tmp_path)


def test_the_shipped_chain_loads(chains: dict[str, Any]) -> None:
    assert set(chains) == {"emergency", "urgent"}
    assert all(Chain(snapshot).total_steps > 0 for snapshot in chains.values())
