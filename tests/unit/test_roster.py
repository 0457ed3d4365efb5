"""The on-call roster: who is on call when, and `telehealth roster add|list|remove|import`."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from telehealth.cli import main
from telehealth.roster import Roster, RosterError
from telehealth.roster_cli import gaps
from tests.conftest import BACKUP, BACKUP_NAME, PRIMARY, PRIMARY_NAME, Clock

H = timedelta(hours=1)


@pytest.fixture
def roster(services: Any) -> Roster:
    return Roster(services.records)


def _on_call(roster: Roster, tier: str, at: datetime) -> list[str]:
    return [person.name for person in roster.on_call(tier, at)]


@pytest.mark.parametrize(("offset", "primary"), [
    (-H, []),  # before the shift
    (timedelta(0), [PRIMARY_NAME]),  # the shift's first moment
    (8 * H - timedelta(seconds=1), [PRIMARY_NAME]),
    (8 * H, [BACKUP_NAME]),  # the handover: one ends as the next starts
    (16 * H, []),  # after both
])
def test_who_is_on_call_at_a_moment(roster: Roster, clock: Clock, offset: timedelta, primary: list[str]) -> None:
    day, night = (roster.add_clinician(name=n, role="physician", phone=p)
                  for n, p in ((PRIMARY_NAME, PRIMARY), (BACKUP_NAME, BACKUP)))
    roster.add_shift(day, starts_at=clock.now, ends_at=clock.now + 8 * H, tier="primary")
    roster.add_shift(night, starts_at=clock.now + 8 * H, ends_at=clock.now + 16 * H, tier="primary")
    assert _on_call(roster, "primary", clock.now + offset) == primary
    assert _on_call(roster, "backup", clock.now + offset) == []


def test_tiers_are_separate_and_overlapping_shifts_name_each_clinician_once(roster: Roster, clock: Clock) -> None:
    a = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    b = roster.add_clinician(name=BACKUP_NAME, role="nurse practitioner", phone=BACKUP)
    roster.add_shift(a, starts_at=clock.now - H, ends_at=clock.now + H, tier="primary")
    roster.add_shift(a, starts_at=clock.now - 2 * H, ends_at=clock.now + 2 * H, tier="primary")
    roster.add_shift(b, starts_at=clock.now - H, ends_at=clock.now + H, tier="backup")
    assert _on_call(roster, "primary", clock.now) == [PRIMARY_NAME]
    assert _on_call(roster, "backup", clock.now) == [BACKUP_NAME]


@pytest.mark.parametrize(("change", "message"), [
    ("end before start", "end after it starts"),
    ("unknown clinician", "no clinician 99"),
    ("same number twice", "already on the roster"),
])
def test_roster_changes_that_make_no_sense_are_refused(
    roster: Roster, clock: Clock, change: str, message: str,
) -> None:
    clinician = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    with pytest.raises(RosterError, match=message):
        if change == "end before start":
            roster.add_shift(clinician, starts_at=clock.now, ends_at=clock.now, tier="primary")
        elif change == "unknown clinician":
            roster.add_shift(99, starts_at=clock.now, ends_at=clock.now + H, tier="primary")
        else:
            roster.add_clinician(name="Someone Else", role="physician", phone=PRIMARY)
    assert roster.shifts() == []


def test_removing_a_clinician_takes_their_shifts_off_call(roster: Roster, clock: Clock) -> None:
    clinician = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    roster.add_shift(clinician, starts_at=clock.now - H, ends_at=clock.now + H, tier="primary")
    roster.remove_clinician(clinician)
    assert _on_call(roster, "primary", clock.now) == []
    assert (roster.clinicians(), roster.shifts()) == ([], [])
    with pytest.raises(RosterError):
        roster.remove_clinician(clinician)


def test_an_sms_opt_out_is_flagged_for_later_pages(roster: Roster, clock: Clock) -> None:
    clinician = roster.add_clinician(name=PRIMARY_NAME, role="physician", phone=PRIMARY)
    roster.add_shift(clinician, starts_at=clock.now - H, ends_at=clock.now + H, tier="primary")
    roster.mark_sms_opted_out(PRIMARY)
    assert [p.sms_opted_out for p in roster.on_call("primary", clock.now)] == [True]
    assert roster.clinician_by_phone(PRIMARY)["sms_opted_out"] is True


def test_importing_matches_clinicians_by_number(roster: Roster, clock: Clock) -> None:
    entries = [{"name": PRIMARY_NAME, "phone": PRIMARY,
                "shifts": [{"start": clock.now, "end": clock.now + H, "tier": "primary"}]}]
    assert roster.import_entries(entries) == (1, 1)
    assert roster.import_entries(entries) == (0, 1)
    assert [c["name"] for c in roster.clinicians()] == [PRIMARY_NAME]
    assert roster.clinicians()[0]["role"] == "clinician"


@pytest.mark.parametrize(("shifts", "expected"), [
    ([], [(0, 24)]),
    ([(0, 24)], []),
    ([(2, 10), (12, 30)], [(0, 2), (10, 12)]),
    ([(-5, 8), (6, 20)], [(20, 24)]),  # overlapping shifts leave no gap between them
    ([(-5, 8), (8, 30)], []),  # back to back
    ([(30, 40)], [(0, 24)]),  # a shift after the window
])
def test_gaps_are_the_stretches_no_shift_covers(
    clock: Clock, shifts: list[tuple[int, int]], expected: list[tuple[int, int]],
) -> None:
    start, end = clock.now, clock.now + 24 * H
    rows = [{"tier": "primary", "starts_at": (start + a * H).isoformat(), "ends_at": (start + b * H).isoformat()}
            for a, b in shifts] + [{"tier": "backup", "starts_at": start.isoformat(), "ends_at": end.isoformat()}]
    assert gaps(rows, start, end, "primary") == [(start + a * H, start + b * H) for a, b in expected]


# --- the command line ------------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _environment(monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    for name in ("REDIS_URL", "PAGER", "TWILIO_ACCOUNT_SID", "SUPERVISOR_PHONE", "FLOWS_DIR", "DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`telehealth db upgrade` once; each test gets a copy of the result."""
    database = tmp_path_factory.mktemp("roster") / "migrated.sqlite3"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _environment(monkeypatch, database)
        assert main(["db", "upgrade"]) == 0
    return database


@pytest.fixture
def cli(migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    database = tmp_path / "roster.sqlite3"
    for suffix in ("", "-wal", "-shm"):  # a WAL file, if one is left, holds part of the schema
        if Path(f"{migrated}{suffix}").exists():
            shutil.copy(f"{migrated}{suffix}", f"{database}{suffix}")
    _environment(monkeypatch, database)
    capsys.readouterr()

    def run(*args: str) -> Ran:
        code = main(["roster", *args])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def test_add_and_list_shows_who_is_on_call_now_and_the_gaps(cli: Any) -> None:
    now = _now()
    end = now + 8 * H
    added = cli("add", "--name", PRIMARY_NAME, "--role", "physician", "--phone", "(617) 555-0111",
                "--shift", f"{_z(now - H)},{_z(end)},primary",
                "--shift", f"{_z(now + 24 * H)},{_z(now + 48 * H)}, primary")
    assert (added.code, added.err) == (0, "")
    assert added.out.strip() == f"added clinician 1: {PRIMARY_NAME} with 2 shift(s)"

    listed = cli("list")
    assert listed.code == 0
    assert f"{PRIMARY_NAME}" in listed.out and "+16175550111" in listed.out
    assert f"On call now, primary: {PRIMARY_NAME}" in listed.out
    assert "On call now, backup: NOBODY (supervisor is paged)" in listed.out
    gap_lines = [line.strip() for line in listed.out.splitlines() if "GAP" in line]
    assert gap_lines[0] == f"GAP: no primary from {end.isoformat()} to {(now + 24 * H).isoformat()}"
    assert gap_lines[1].startswith(f"GAP: no primary from {(now + 48 * H).isoformat()} to ")
    assert gap_lines[2].startswith("GAP: no backup from ")
    assert "SUPERVISOR_PHONE is not set" in listed.out


def test_list_shows_only_the_week_ahead_and_no_warning_with_a_supervisor(
    cli: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = _now()
    monkeypatch.setenv("SUPERVISOR_PHONE", "+16175550199")
    cli("add", "--name", PRIMARY_NAME, "--phone", PRIMARY, "--shift", f"{_z(now + 10 * 24 * H)},"
        f"{_z(now + 11 * 24 * H)},primary")
    listed = cli("list")
    assert _z(now + 10 * 24 * H)[:10] not in listed.out
    assert "On call now, primary: NOBODY" in listed.out
    assert "SUPERVISOR_PHONE" not in listed.out


def test_remove_takes_the_clinician_off_the_roster(cli: Any) -> None:
    now = _now()
    cli("add", "--name", PRIMARY_NAME, "--phone", PRIMARY, "--shift", f"{_z(now - H)},{_z(now + H)},primary")
    removed = cli("remove", "1")
    assert (removed.code, removed.out.strip()) == (0, "removed clinician 1 and their shifts")
    listed = cli("list")
    assert PRIMARY_NAME not in listed.out
    assert "On call now, primary: NOBODY" in listed.out
    again = cli("remove", "1")
    assert (again.code, again.err.strip()) == (2, "roster: no clinician 1")


def test_import_a_yaml_file(cli: Any, tmp_path: Path) -> None:
    now = _now()
    file = tmp_path / "roster.yaml"
    file.write_text(yaml.safe_dump({"clinicians": [
        {"name": PRIMARY_NAME, "role": "physician", "phone": "617-555-0111",
         "shifts": [{"start": _z(now - H), "end": _z(now + 8 * H), "tier": "primary"}]},
        {"name": BACKUP_NAME, "phone": BACKUP,
         "shifts": [{"start": _z(now - H), "end": _z(now + 8 * H), "tier": "backup"},
                    {"start": _z(now + 8 * H), "end": _z(now + 16 * H), "tier": "primary"}]},
    ]}), encoding="utf-8")

    imported = cli("import", str(file))
    assert (imported.code, imported.out.strip()) == (0, "imported 2 clinician(s) and 3 shift(s)")
    listed = cli("list")
    assert f"On call now, primary: {PRIMARY_NAME}" in listed.out
    assert f"On call now, backup: {BACKUP_NAME}" in listed.out
    assert "+16175550111" in listed.out


def test_import_reads_unquoted_yaml_timestamps(cli: Any, tmp_path: Path) -> None:
    now = _now()
    file = tmp_path / "roster.yaml"
    file.write_text(f"clinicians:\n  - name: {PRIMARY_NAME}\n    phone: '{PRIMARY}'\n    shifts:\n"
                    f"      - {{start: {_z(now - H)}, end: {_z(now + H)}, tier: primary}}\n", encoding="utf-8")
    assert cli("import", str(file)).code == 0
    assert f"On call now, primary: {PRIMARY_NAME}" in cli("list").out


@pytest.mark.parametrize(("phone", "shift", "message"), [
    ("12345", None, "not a phone number: 12345"),
    ("call me", None, "not a phone number: call me"),
    (PRIMARY, "tomorrow,2026-11-27T20:00Z,primary", "not a time: tomorrow"),
    (PRIMARY, "2026-11-27T08:00,2026-11-27T20:00Z,primary", "with its offset"),
    (PRIMARY, "2026-11-27T20:00Z,2026-11-27T08:00Z,primary", "end after it starts"),
    (PRIMARY, "2026-11-27T08:00Z,2026-11-27T20:00Z,oncall", "primary or backup, not oncall"),
    (PRIMARY, "2026-11-27T08:00Z,2026-11-27T20:00Z", "START,END,TIER"),
])
def test_a_bad_phone_or_shift_exits_2_with_a_message_and_adds_nobody(
    cli: Any, phone: str, shift: str | None, message: str,
) -> None:
    args = ["add", "--name", PRIMARY_NAME, "--phone", phone] + (["--shift", shift] if shift else [])
    ran = cli(*args)
    assert ran.code == 2
    assert ran.err.startswith("roster: ") and message in ran.err
    assert ran.out == ""
    assert PRIMARY_NAME not in cli("list").out
    if shift:  # nothing half done: the same command, fixed, works
        fixed = cli("add", "--name", PRIMARY_NAME, "--phone", phone)
        assert fixed.code == 0


def test_adding_the_same_number_twice_exits_2(cli: Any) -> None:
    assert cli("add", "--name", PRIMARY_NAME, "--phone", PRIMARY).code == 0
    again = cli("add", "--name", "Someone Else", "--phone", "617 555 0111")
    assert again.code == 2
    assert again.err.strip() == "roster: a clinician with number +16175550111 is already on the roster"


@pytest.mark.parametrize(("content", "message"), [
    ("clinicians:\n  - name: A\n    phone: '12'\n", "not a phone number: 12"),
    ("clinicians:\n  - phone: '+16175550111'\n", "'name' is missing"),
    ("clinicians:\n  - name: A\n    phone: '+16175550111'\n    shifts:\n      - {start: x, end: y, tier: primary}\n",
     "not a time: x"),
    ("- just a list\n", "should hold `clinicians:`"),
    ("clinicians: [unclosed\n", "roster: "),
])
def test_a_bad_import_file_exits_2_and_imports_nothing(cli: Any, tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(content, encoding="utf-8")
    ran = cli("import", str(file))
    assert ran.code == 2
    assert message in ran.err
    assert "+16175550111" not in cli("list").out


def test_a_missing_import_file_exits_2(cli: Any, tmp_path: Path) -> None:
    ran = cli("import", str(tmp_path / "nowhere.yaml"))
    assert (ran.code, ran.out) == (2, "")
    assert "nowhere.yaml" in ran.err
