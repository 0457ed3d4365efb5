"""The Flask app factory."""
from __future__ import annotations

import uuid

from flask import Flask, Response, request

from telehealth import console, metrics
from telehealth import services as services_module
from telehealth import settings as settings_module
from telehealth import logs
from telehealth.logs import configure_logging
from telehealth.services import Services
from telehealth.settings import Settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or (services.settings if services else settings_module.from_env())
    configure_logging()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, SERVICES=services or services_module.build(settings))

    from telehealth.web import alerts, api, health, sms, voice

    for blueprint in (sms.bp, voice.bp, alerts.bp, api.bp, health.bp):
        app.register_blueprint(blueprint)
    console.init_app(app)  # its own cookie and security headers, on /console only
    metrics.init_app(app)
    _bind_request_ids(app)
    return app


def _bind_request_ids(app: Flask) -> None:
    """Every log line of a request carries its id; Twilio and proxies may send one to reuse."""

    @app.before_request
    def _bind() -> None:
        given = request.headers.get("X-Request-Id", "")
        logs.request_id.set(given[:64] if given.isalnum() else uuid.uuid4().hex[:16])
        logs.conversation_id.set(None)

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers["X-Request-Id"] = logs.request_id.get() or ""
        return response
