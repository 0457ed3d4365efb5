"""The escalation chain as data (flows/escalation.yaml) and its timetable. Pure: no I/O but loading."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from telehealth.triage.protocol import ProtocolError

CHAIN_FILE = "escalation.yaml"


class ChainError(ValueError):
    """A chain whose timetable makes no sense; `where` is the path inside the chain."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


@dataclass(frozen=True)
class Step:
    index: int  # position across all rounds: round * len(steps) + position in the round
    round: int
    after_seconds: float
    to: str
    via: tuple[str, ...]


class Chain:
    """One level's chain, built from the snapshot stored on an escalation."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        self.snapshot = dict(snapshot)
        self.steps = list(snapshot["steps"])
        self.rounds = int(snapshot["rounds"])
        self.round_seconds = float(snapshot["round_seconds"])
        self.callback_window = str(snapshot["callback_window"])
        for position, raw in enumerate(self.steps):
            if float(raw["after_seconds"]) >= self.round_seconds:
                raise ChainError(f"steps.{position}.after_seconds",
                                 f"{raw['after_seconds']:g} is too late: every step must start before its "
                                 f"round ends (round_seconds {self.round_seconds:g})")

    @property
    def total_steps(self) -> int:
        return self.rounds * len(self.steps)

    def step(self, index: int) -> Step:
        round_, position = divmod(index, len(self.steps))
        raw = self.steps[position]
        return Step(index, round_, float(raw["after_seconds"]), raw["to"], tuple(raw["via"]))

    def due_at(self, started_at: datetime, index: int) -> datetime:
        """When step `index` runs; index == total_steps is the end of the chain."""
        if index >= self.total_steps:
            return started_at + timedelta(seconds=self.rounds * self.round_seconds)
        step = self.step(index)
        return started_at + timedelta(seconds=step.round * self.round_seconds + step.after_seconds)


def load(flows_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The chains by level ("emergency", "urgent"), checked against the schema."""
    path = Path(flows_dir) / CHAIN_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProtocolError(str(path), "", f"cannot read: {exc}") from exc
    schema = json.loads((Path(flows_dir) / "escalation.schema.json").read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise ProtocolError(str(path), where, error.message)
    for level, snapshot in data["chains"].items():
        try:
            Chain(snapshot)
            _check_order(snapshot["steps"])
        except ChainError as exc:
            raise ProtocolError(str(path), f"chains.{level}.{exc.where}", exc.message) from exc
    return data["chains"]


def _check_order(steps: list[dict[str, Any]]) -> None:
    """Steps run in the order written, so one listed before an earlier-timed step would run late."""
    for position in range(1, len(steps)):
        before, after = steps[position - 1]["after_seconds"], steps[position]["after_seconds"]
        if after < before:
            raise ChainError(f"steps.{position}.after_seconds",
                             f"{after:g} is earlier than the step above it ({before:g}): "
                             "list the steps in the order they run")
