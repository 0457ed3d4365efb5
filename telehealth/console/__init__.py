"""The staff console under /console: conversations, the live board, roster, dashboard, audit.

`init_app` mounts it. Its session cookie is scoped to /console, and its security headers are set on
console responses only, so the Twilio webhooks and the JSON API answer exactly as before.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, render_template
from werkzeug.exceptions import HTTPException

from telehealth.console import display, guard

COOKIE_NAME = "telehealth_console"


def init_app(app: Flask) -> None:
    from telehealth.console import audit, auth, board, conversations, dashboard, roster, staff

    settings = app.config["SERVICES"].settings
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_secure_cookies,
    )
    console = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    console.before_request(guard.before_console_request)
    console.after_request(guard.add_security_headers)
    console.context_processor(_template_globals)
    for code in (400, 401, 403, 404, 405):
        console.register_error_handler(code, _error_page)
    for child in (auth.bp, conversations.bp, board.bp, roster.bp, dashboard.bp, audit.bp, staff.bp):
        console.register_blueprint(child)
    display.install(app)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.register_blueprint(console)


def _template_globals() -> dict[str, Any]:
    services = guard.services()
    tz_name, labels, now = (
        services.settings.console_timezone,
        services.protocol.fact_labels,
        guard.now(),
    )
    return {
        "user": guard.signed_in_user(),
        "csrf_token": guard.csrf_token,
        "now": now,
        "flag_words": lambda facts: ", ".join(labels.get(f, f.replace("_", " ")) for f in facts),
        "local": lambda value, fmt="%d %b %Y %H:%M": display.local(value, tz_name, fmt),
        "since": lambda value: display.since(value, now),
        "tz_name": tz_name,
    }


def _error_page(error: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", error=error), error.code or 500
