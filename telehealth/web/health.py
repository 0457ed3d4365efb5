"""Liveness and readiness for load balancers."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

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
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503
