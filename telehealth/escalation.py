"""Open an escalation for a conversation and send its alert (the RQ job's logic lives here).

The database decides whether an escalation exists: one per conversation, created once, so a
retried webhook never queues a second one.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telehealth.services import Services

log = logging.getLogger(__name__)

SEND_ALERT_JOB = "workers.escalations.send_alert"


class EscalationMissing(Exception):
    """A job names an escalation the database does not hold."""


def open_escalation(services: "Services", conversation_id: int, *, level: str, reason: str,
                    summary: str) -> int:
    """Record the escalation and queue its alert; return its id. Never waits for the alert."""
    escalation_id, created = services.records.create_escalation(
        conversation_id, level=level, reason=reason, summary=summary
    )
    if created:
        services.records.add_escalation_event(escalation_id, "queued", {"level": level, "reason": reason})
        services.jobs.enqueue(SEND_ALERT_JOB, escalation_id, job_id=f"alert-{escalation_id}")
        log.info("escalation queued", extra={"escalation_id": escalation_id, "conversation_id": conversation_id})
    return escalation_id


def alert_text(escalation: dict, phone: str) -> str:
    """What the on-call clinician needs and nothing more: level, case code, flags, callback number."""
    level = str(escalation["level"]).upper()
    reason = " (patient stopped replying)" if escalation["reason"] == "abandoned" else ""
    return (f"{level} back pain {escalation['id']}: {escalation['summary']}{reason}. "
            f"Call {phone}.")


def send_alert(services: "Services", escalation_id: int) -> None:
    records = services.records
    escalation = records.get_escalation(escalation_id)
    if escalation is None:
        raise EscalationMissing(f"escalation {escalation_id} not found")
    if any(e["kind"] == "alert_sent" for e in escalation.get("events", [])):
        return  # a retried job: the alert already went out
    conversation = records.get_conversation(escalation["conversation_id"])
    assert conversation is not None
    delivery = services.pager.send_alert(alert_text(escalation, conversation["phone"]),
                                         escalation_id=escalation_id)
    records.add_escalation_event(escalation_id, "alert_sent", {"via": "console", "delivery": delivery})


def alert_failure(services: "Services", endpoint: str, caller: str) -> None:
    """A webhook failed mid-conversation: ask the on-call clinician to call the patient back."""
    who = f"Call {caller} back." if caller else "Caller unknown."
    text = f"LINE FAULT: the triage line failed to answer a patient ({endpoint}). {who}"
    services.pager.send_alert(text, escalation_id=0)
    services.records.audit("failure_alert_sent", detail={"endpoint": endpoint})
