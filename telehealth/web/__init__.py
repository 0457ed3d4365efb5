"""Thin Flask blueprints: Twilio webhooks, the JSON API, health checks."""
