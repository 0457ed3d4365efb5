"""Escalation jobs run by `rq worker escalations`."""
from __future__ import annotations

from typing import Any

from telehealth import escalation, services as services_module


def send_alert(escalation_id: int, services: Any = None) -> None:
    escalation.send_alert(services or services_module.for_worker(), escalation_id)


def alert_failure(endpoint: str, caller: str, services: Any = None) -> None:
    escalation.alert_failure(services or services_module.for_worker(), endpoint, caller)
