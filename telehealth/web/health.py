"""Liveness and readiness for load balancers."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from telehealth.outbox import Outbox
from telehealth.sessions import SessionUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    services = current_app.config["SERVICES"]
    checks = {
        "redis": services.sessions.ping(),
        "database": services.records.ping(),
        "queue": services.jobs.ping(),
        "protocol": bool(services.protocol.questions),
    }
    ready = all(checks.values())
    # Writes kept in Redis while the database was down, and writes the database refused for good.
    outbox: dict[str, int | None] = {"pending": None, "dead_letters": None}
    if checks["redis"]:
        try:
            box = Outbox(services.sessions.client, mapping_ttl_seconds=services.settings.session_ttl_seconds)
            outbox = {"pending": box.backlog(), "dead_letters": box.dead_letter_count()}
        except SessionUnavailable:
            pass
    return (jsonify(status="ready" if ready else "unavailable", checks=checks, outbox=outbox),
            200 if ready else 503)
