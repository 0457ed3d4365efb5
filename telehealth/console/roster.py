"""The roster page: who is on call now and next, the coming week's shifts and gaps.

Everyone signed in can see it; only admins change it, and every change is audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from telehealth.console import charts, guard
from telehealth.console.display import zone
from telehealth.phones import to_e164
from telehealth.roster import Roster, RosterError, Tier
from telehealth.roster_cli import LOOKAHEAD, gaps

bp = Blueprint("roster", __name__)

# Shorter stretches are the end of the week moving while the page renders, not a roster hole.
MIN_GAP = timedelta(minutes=1)


@bp.get("/roster")
def index() -> ResponseReturnValue:
    services, now = guard.services(), guard.now()
    roster = Roster(services.records)
    ahead = [
        s
        for s in roster.shifts(ending_after=now)
        if datetime.fromisoformat(s["starts_at"]) < now + LOOKAHEAD
    ]
    tiers = [t.value for t in Tier]
    found_gaps = {
        tier: [(a, b) for a, b in gaps(ahead, now, now + LOOKAHEAD, tier) if b - a >= MIN_GAP]
        for tier in tiers
    }
    return render_template(
        "console/roster.html",
        clinicians=roster.clinicians(),
        shifts=ahead,
        tiers=tiers,
        on_call={tier: roster.on_call(tier, now) for tier in tiers},
        next_up={tier: _next_shift(ahead, tier, now) for tier in tiers},
        gaps=found_gaps,
        supervisor_set=bool(services.settings.supervisor_phone),
        week=charts.week_strip(ahead, found_gaps, now, services.settings.console_timezone),
    )


@bp.post("/roster/clinicians")
@guard.admin_only
def add_clinician() -> ResponseReturnValue:
    phone = to_e164(request.form.get("phone", ""), guard.services().settings.default_region)
    name = request.form.get("name", "").strip()
    if phone is None or not name:
        flash("Give the clinician's name and a valid mobile number.", "error")
        return _back()
    try:
        clinician_id = Roster(guard.services().records).add_clinician(
            name=name, role=request.form.get("role", "").strip() or "clinician", phone=phone
        )
    except RosterError as exc:
        flash(str(exc), "error")
        return _back()
    guard.audit("roster_add", target=f"clinician:{clinician_id}", via="console")
    flash(f"{name} added to the roster.", "info")
    return _back()


@bp.post("/roster/clinicians/<int:clinician_id>/remove")
@guard.admin_only
def remove_clinician(clinician_id: int) -> ResponseReturnValue:
    try:
        Roster(guard.services().records).remove_clinician(clinician_id)
    except RosterError as exc:
        flash(str(exc), "error")
        return _back()
    guard.audit("roster_remove", target=f"clinician:{clinician_id}", via="console")
    flash("Clinician and their shifts removed.", "info")
    return _back()


@bp.post("/roster/shifts")
@guard.admin_only
def add_shift() -> ResponseReturnValue:
    tz_name = guard.services().settings.console_timezone
    try:
        clinician_id = int(request.form.get("clinician_id", ""))
        starts_at = _local_input(request.form.get("starts_at", ""), tz_name)
        ends_at = _local_input(request.form.get("ends_at", ""), tz_name)
        shift_id = Roster(guard.services().records).add_shift(
            clinician_id, starts_at=starts_at, ends_at=ends_at, tier=request.form.get("tier", "")
        )
    except (RosterError, ValueError) as exc:
        flash(f"The shift was not added: {_reason(exc)}", "error")
        return _back()
    guard.audit(
        "roster_shift_add",
        target=f"shift:{shift_id}",
        clinician=clinician_id,
        tier=request.form.get("tier", ""),
        via="console",
    )
    flash("Shift added.", "info")
    return _back()


@bp.post("/roster/shifts/<int:shift_id>/remove")
@guard.admin_only
def remove_shift(shift_id: int) -> ResponseReturnValue:
    Roster(guard.services().records).remove_shift(shift_id)
    guard.audit("roster_shift_remove", target=f"shift:{shift_id}", via="console")
    flash("Shift removed.", "info")
    return _back()


def _next_shift(shifts: list[dict[str, Any]], tier: str, now: datetime) -> dict[str, Any] | None:
    return next(
        (s for s in shifts if s["tier"] == tier and datetime.fromisoformat(s["starts_at"]) > now),
        None,
    )


def _local_input(value: str, tz_name: str) -> datetime:
    """A datetime-local field ('2026-11-27T08:00'), read in the console's time zone."""
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz_name))
    return moment


def _reason(exc: Exception) -> str:
    if isinstance(exc, RosterError):
        return str(exc)
    return "choose a clinician, a tier, and a start and end time."


def _back() -> ResponseReturnValue:
    return redirect(url_for(".index"))
