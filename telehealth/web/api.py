"""Read-only JSON API for conversations, for tools and the patient player (Bearer API_TOKEN)."""
from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from telehealth.phones import to_e164
from telehealth.records import ConversationStatus, Disposition

bp = Blueprint("api", __name__, url_prefix="/api")

# The values each filter can take; anything else is the caller's mistake (400), not ours (500).
FILTERS = {
    "disposition": tuple(d.value for d in Disposition),
    "status": tuple(s.value for s in ConversationStatus),
}
PUBLIC_FIELDS = ("id", "channel", "phone", "status", "disposition", "red_flags", "rule",
                 "protocol_version", "started_at", "ended_at", "turns", "escalation")


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    expected = current_app.config["SERVICES"].settings.api_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        response = jsonify(error="a valid Bearer API token is required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


@bp.get("/conversations")
def list_conversations() -> ResponseReturnValue:
    services = current_app.config["SERVICES"]
    phone = request.args.get("phone") or None
    if phone is not None:
        phone = to_e164(phone, services.settings.default_region) or phone
    limit = min(max(request.args.get("limit", default=50, type=int), 1), 500)
    filters = {name: request.args.get(name) or None for name in FILTERS}
    for name, value in filters.items():
        if value is not None and value not in FILTERS[name]:
            response = jsonify(error=f"{name} must be one of: {', '.join(FILTERS[name])}")
            response.status_code = 400
            return response
    found = services.records.list_conversations(phone=phone, limit=limit, **filters)
    return jsonify(conversations=[_public(c) for c in found])


@bp.get("/conversations/<int:conversation_id>")
def get_conversation(conversation_id: int) -> ResponseReturnValue:
    found = current_app.config["SERVICES"].records.get_conversation(conversation_id)
    if found is None:
        response = jsonify(error=f"no conversation {conversation_id}")
        response.status_code = 404
        return response
    return jsonify(_public(found))


def _public(conversation: dict[str, Any]) -> dict[str, Any]:
    data = {key: conversation[key] for key in PUBLIC_FIELDS if key in conversation}
    if "turns" in data:
        data["turns"] = [{key: t[key] for key in ("at", "direction", "text", "digits", "speech", "confidence")}
                         for t in data["turns"]]
    return data
