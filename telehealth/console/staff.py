"""Admin page for staff accounts: add, deactivate, reactivate, unlock."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from telehealth.console import guard
from telehealth.phones import to_e164
from telehealth.users import MIN_PASSWORD_LENGTH, Role, UserError

bp = Blueprint("staff", __name__)
bp.before_request(guard.require_admin)


@bp.get("/staff")
def index() -> ResponseReturnValue:
    return render_template(
        "console/staff.html",
        accounts=guard.users().all(),
        roles=[r.value for r in Role],
        min_password=MIN_PASSWORD_LENGTH,
        now=guard.now(),
    )


@bp.post("/staff")
def add() -> ResponseReturnValue:
    form = request.form
    raw_phone = form.get("phone", "").strip()
    phone = to_e164(raw_phone, guard.services().settings.default_region) if raw_phone else None
    try:
        if raw_phone and phone is None:
            raise UserError("the roster number is not a phone number")
        user_id = guard.users().add(
            email=form.get("email", ""),
            name=form.get("name", ""),
            role=form.get("role", ""),
            password=form.get("password", ""),
            phone=phone,
            now=guard.now(),
        )
    except UserError as exc:
        flash(f"The account was not added: {exc}.", "error")
        return redirect(url_for(".index"))
    guard.audit("user_add", target=f"user:{user_id}", role=form.get("role", ""))
    flash("Account added.", "info")
    return redirect(url_for(".index"))


@bp.post("/staff/<int:user_id>/<any(deactivate, activate, unlock):change>")
def change(user_id: int, change: str) -> ResponseReturnValue:
    if user_id == guard.current_user().id and change == "deactivate":
        flash("You cannot deactivate your own account.", "error")
        return redirect(url_for(".index"))
    try:
        if change == "unlock":
            guard.users().unlock(user_id)
        else:
            guard.users().set_active(user_id, change == "activate")
    except UserError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".index"))
    guard.audit(f"user_{change}", target=f"user:{user_id}")
    flash("Account updated.", "info")
    return redirect(url_for(".index"))
