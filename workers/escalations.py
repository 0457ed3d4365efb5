"""Escalation jobs run by `rq worker escalations`; the logic lives in telehealth.escalation."""
from __future__ import annotations

from typing import Any

from telehealth import escalation, services as services_module


def run_due(escalation_id: int, services: Any = None) -> None:
    escalation.run_due(services or services_module.for_worker(), escalation_id)


def deliver(alert_id: int, services: Any = None) -> None:
    escalation.deliver(services or services_module.for_worker(), alert_id)


def alert_failure(endpoint: str, caller: str, services: Any = None) -> None:
    escalation.alert_failure(services or services_module.for_worker(), endpoint, caller)
