"""The Flask app factory."""
from __future__ import annotations

from flask import Flask

from telehealth import console
from telehealth import services as services_module
from telehealth import settings as settings_module
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
    return app
