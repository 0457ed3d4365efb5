"""`telehealth roster add|list|remove|import`: manage who is on call from the command line."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml

from telehealth.phones import to_e164
from telehealth.roster import Roster, RosterError, Tier

# A week ahead is what a manager plans; a gap in it is shown.
LOOKAHEAD = timedelta(days=7)


def run(services: Any, args: argparse.Namespace) -> int:
    roster = Roster(services.records)
    try:
        return {"add": _add, "list": _list, "remove": _remove, "import": _import}[args.roster_command](
            services, roster, args)
    except KeyError as exc:
        print(f"roster: {exc} is missing (clinicians need name and phone; shifts start, end and tier)",
              file=sys.stderr)
        return 2
    except (RosterError, ValueError, OSError, yaml.YAMLError) as exc:
        print(f"roster: {exc}", file=sys.stderr)
        return 2


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text} (give UTC in ISO 8601, like 2026-11-27T08:00Z)") from None
    if value.tzinfo is None:
        raise ValueError(f"give a UTC time with its offset, like {text}Z")
    return value.astimezone(timezone.utc)


def _phone(raw: str, region: str) -> str:
    phone = to_e164(str(raw), region)
    if phone is None:
        raise ValueError(f"not a phone number: {raw}")
    return phone


def _shift(start: Any, end: Any, tier: Any) -> dict[str, Any]:
    starts_at, ends_at = _time(start), _time(end)
    if ends_at <= starts_at:
        raise ValueError(f"a shift must end after it starts: {start} -> {end}")
    if str(tier).strip() not in {t.value for t in Tier}:
        raise ValueError(f"a shift's tier is primary or backup, not {tier}")
    return {"start": starts_at, "end": ends_at, "tier": str(tier).strip()}


def _shift_spec(spec: str) -> dict[str, Any]:
    parts = spec.split(",")
    if len(parts) != 3:
        raise ValueError(f"a shift is START,END,TIER like 2026-11-27T08:00Z,2026-11-27T20:00Z,primary, not {spec}")
    return _shift(*(part.strip() for part in parts))


def _add(services: Any, roster: Roster, args: argparse.Namespace) -> int:
    # Check everything first: a bad shift must not leave the clinician half added.
    phone = _phone(args.phone, services.settings.default_region)
    shifts = [_shift_spec(spec) for spec in args.shift]
    clinician_id = roster.add_clinician(name=args.name, role=args.role, phone=phone)
    for shift in shifts:
        roster.add_shift(clinician_id, starts_at=shift["start"], ends_at=shift["end"], tier=shift["tier"])
    services.records.audit("roster_add", actor="cli", target=f"clinician:{clinician_id}",
                           detail={"shifts": len(args.shift)})
    print(f"added clinician {clinician_id}: {args.name} with {len(args.shift)} shift(s)")
    return 0


def _remove(services: Any, roster: Roster, args: argparse.Namespace) -> int:
    roster.remove_clinician(args.clinician_id)
    services.records.audit("roster_remove", actor="cli", target=f"clinician:{args.clinician_id}")
    print(f"removed clinician {args.clinician_id} and their shifts")
    return 0


def _import(services: Any, roster: Roster, args: argparse.Namespace) -> int:
    data = yaml.safe_load(args.file.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("clinicians", []), list):
        raise ValueError(f"{args.file} should hold `clinicians:`, a list of name, role, phone and shifts")
    entries = []
    for entry in data.get("clinicians", []):
        entries.append({
            "name": entry["name"], "role": entry.get("role", "clinician"),
            "phone": _phone(entry["phone"], services.settings.default_region),
            "shifts": [_shift(s["start"], s["end"], s["tier"]) for s in entry.get("shifts", [])],
        })
    clinicians, shifts = roster.import_entries(entries)
    services.records.audit("roster_import", actor="cli", detail={"clinicians": clinicians, "shifts": shifts})
    print(f"imported {clinicians} clinician(s) and {shifts} shift(s)")
    return 0


def _list(services: Any, roster: Roster, args: argparse.Namespace) -> int:
    now = services.clock()
    print("Clinicians:")
    for c in roster.clinicians():
        flag = "  (SMS opted out: paged by voice)" if c["sms_opted_out"] else ""
        print(f"  {c['id']:>4}  {c['name']:<24} {c['role']:<12} {c['phone']}{flag}")
    for tier in ("primary", "backup"):
        names = ", ".join(p.name for p in roster.on_call(tier, now)) or "NOBODY (supervisor is paged)"
        print(f"On call now, {tier}: {names}")
    print(f"Shifts ahead (next {LOOKAHEAD.days} days):")
    ahead = [s for s in roster.shifts(ending_after=now)
             if datetime.fromisoformat(s["starts_at"]) < now + LOOKAHEAD]
    for s in ahead:
        print(f"  {s['starts_at']} -> {s['ends_at']}  {s['tier']:<8} {s['name']}")
    for tier in ("primary", "backup"):
        for gap_start, gap_end in gaps(ahead, now, now + LOOKAHEAD, tier):
            print(f"  GAP: no {tier} from {gap_start.isoformat()} to {gap_end.isoformat()}")
    if not services.settings.supervisor_phone:
        print("Warning: SUPERVISOR_PHONE is not set; gaps in the roster reach nobody.")
    return 0


def gaps(shifts: list[dict[str, Any]], start: datetime, end: datetime, tier: str) -> list[tuple[datetime, datetime]]:
    """Stretches between start and end that no shift of this tier covers."""
    spans = sorted((datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
                   for s in shifts if s["tier"] == tier)
    found, cursor = [], start
    for s, e in spans:
        if s > cursor:
            found.append((cursor, min(s, end)))
        cursor = max(cursor, e)
        if cursor >= end:
            break
    if cursor < end:
        found.append((cursor, end))
    return [(a, b) for a, b in found if b > a]
