"""Signing in and out of the staff console."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from telehealth.console import guard

bp = Blueprint("auth", __name__)

FAILED = (
    "Wrong email or password. After {failures} wrong tries in a row an account is locked "
    "for {minutes} minutes."
)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    if request.method == "GET":
        if guard.signed_in_user() is not None:
            return redirect(guard.after_sign_in_target())
        return render_template("console/sign_in.html", email="")
    email = request.form.get("email", "")[:254]
    user = guard.users().authenticate(email, request.form.get("password", ""), guard.now())
    if user is None:
        # The account tried, if there is one; never the text typed (it may be a password).
        known = guard.users().id_for_email(email)
        guard.services().records.audit(
            "console_sign_in_failed",
            actor="anonymous",
            target=None if known is None else f"user:{known}",
        )
        settings = guard.services().settings
        flash(
            FAILED.format(
                failures=settings.console_lockout_failures, minutes=settings.console_lockout_minutes
            ),
            "error",
        )
        return render_template("console/sign_in.html", email=email), 401
    target = guard.after_sign_in_target()
    guard.start_session(user)
    guard.services().records.audit("console_sign_in", actor=user.email, target=f"user:{user.id}")
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    user = guard.current_user()
    guard.users().rotate_session_key(user.id)
    guard.audit("console_sign_out", target=f"user:{user.id}")
    guard.end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("console.auth.sign_in"))
