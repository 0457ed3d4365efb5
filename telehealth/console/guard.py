"""Who is signed in, for how long, and what they may do: sessions, CSRF, roles, headers.

The console is default-deny: every console request needs a signed-in user unless its endpoint is
listed in PUBLIC_ENDPOINTS. Admin-only blueprints call `require_admin` before each request;
admin-only views inside shared blueprints use `@admin_only`.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from telehealth.services import Services
from telehealth.users import Lockout, StaffUser, Users

PUBLIC_ENDPOINTS = {"console.auth.sign_in", "console.static"}
# The board's self-refresh sends this header: it must not count as activity, or a board left
# open on a desk would keep its session alive for ever.
REFRESH_HEADER = "X-Console-Refresh"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)


def services() -> Services:
    return current_app.config["SERVICES"]  # type: ignore[no-any-return]


def users() -> Users:
    settings = services().settings
    return Users(
        services().records,
        Lockout(settings.console_lockout_failures, settings.console_lockout_minutes),
    )


def signed_in_user() -> StaffUser | None:
    return g.get("staff_user")


def current_user() -> StaffUser:
    user = signed_in_user()
    if user is None:
        abort(401)
    return user


def actor() -> str:
    """How the audit log names the signed-in user."""
    return current_user().email


def audit(action: str, target: str | None = None, **detail: Any) -> None:
    """Record what the signed-in user did. Callers keep patient data out of `detail`."""
    services().records.audit(action, actor=actor(), target=target, detail=detail)


def now() -> datetime:
    return services().clock()


# --- the session -------------------------------------------------------------------------------


def start_session(user: StaffUser) -> None:
    """A fresh session for a signed-in user: nothing from before sign-in survives (fixation)."""
    session.clear()
    session.update(
        uid=user.id, key=user.session_key, seen=now().timestamp(), csrf=secrets.token_urlsafe(32)
    )


def end_session() -> None:
    session.clear()


def before_console_request() -> ResponseReturnValue | None:
    """Load the user, sign out the idle, refuse forged forms, send strangers to sign in."""
    if request.endpoint == "console.static":
        return None
    g.staff_user = _session_user()
    if request.method in _UNSAFE_METHODS and not _has_valid_csrf_token():
        abort(400, "This form has expired. Go back, reload the page and try again.")
    if request.endpoint in PUBLIC_ENDPOINTS or g.staff_user is not None:
        return None
    if request.headers.get(REFRESH_HEADER):
        return Response("signed out", status=401, mimetype="text/plain")
    return redirect(url_for("console.auth.sign_in", next=_local_path(request.full_path)))


def _session_user() -> StaffUser | None:
    user_id, key, seen = session.get("uid"), session.get("key"), session.get("seen")
    if user_id is None:
        return None
    user = users().get(int(user_id))
    valid = (
        user is not None
        and user.active
        and isinstance(key, str)
        and hmac.compare_digest(key, user.session_key)
    )
    idle_limit = services().settings.console_idle_minutes * 60
    idle = now().timestamp() - float(seen or 0)
    if not valid or idle > idle_limit:
        end_session()
        if valid:
            flash(f"You were signed out after {idle_limit // 60} minutes without activity.", "info")
        return None
    if not request.headers.get(REFRESH_HEADER):
        session["seen"] = now().timestamp()
    return user


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _has_valid_csrf_token() -> bool:
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and hmac.compare_digest(given.encode(), expected.encode())


def _local_path(target: str | None) -> str | None:
    """Only a path on this site may be the place to return to after sign-in (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or "\\" in target:
        return None
    return target.rstrip("?")


def after_sign_in_target() -> str:
    return _local_path(request.args.get("next")) or url_for("console.conversations.index")


# --- roles -------------------------------------------------------------------------------------


def require_admin() -> None:
    """A blueprint's before_request for pages only admins may see."""
    if g.get("staff_user") is not None and not g.staff_user.is_admin:
        abort(403)


def admin_only(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not current_user().is_admin:
            abort(403)
        return view(*args, **kwargs)

    return guarded


# --- headers -----------------------------------------------------------------------------------


def add_security_headers(response: Response) -> Response:
    """Console responses only: the Twilio webhooks and the API keep their own headers."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if request.endpoint != "console.static":
        # Patient data must not stay in a shared computer's cache or back/forward history.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    if services().settings.console_secure_cookies:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response
